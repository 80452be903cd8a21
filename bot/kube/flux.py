"""Flux's vocabulary, named once: API groups, condition types, reasons, labels, annotations.

Every value is copied from the controllers' sources (links below) so the follower, `status` and
the Kubernetes stand-in speak the same words as a real cluster:
- fluxcd/pkg apis/meta/conditions.go (Ready, Stalled, Reconciling, shared reasons):
  https://github.com/fluxcd/pkg/blob/main/apis/meta/conditions.go
- fluxcd/source-controller api/v1/condition_types.go and gitrepository_types.go:
  https://github.com/fluxcd/source-controller/blob/main/api/v1/condition_types.go
- fluxcd/kustomize-controller internal/controller/kustomization_controller.go (which reasons it sets):
  https://github.com/fluxcd/kustomize-controller/blob/main/internal/controller/kustomization_controller.go
- fluxcd/helm-controller api/v2/condition_types.go, internal/reconcile/atomic_release.go (RetriesExceeded),
  internal/controller/helmrelease_controller.go (SourceNotReady):
  https://github.com/fluxcd/helm-controller/blob/main/api/v2/condition_types.go
- fluxcd/pkg apis/meta/annotations.go (reconcile.fluxcd.io/requestedAt) and fluxcd/kustomize-controller
  api/v1/kustomization_types.go (the kustomize.toolkit.fluxcd.io/name|namespace owner labels).
Pure: no I/O, importable by the stand-in and the follower alike.
"""
from __future__ import annotations

from typing import Any, Literal

# -- API groups, kinds, versions (newest first: discovery picks the first one a cluster serves) ----
SOURCE_GROUP = "source.toolkit.fluxcd.io"
KUSTOMIZE_GROUP = "kustomize.toolkit.fluxcd.io"
HELM_GROUP = "helm.toolkit.fluxcd.io"
GITREPOSITORIES, KUSTOMIZATIONS, HELMRELEASES = "gitrepositories", "kustomizations", "helmreleases"
KINDS: dict[str, tuple[str, str, tuple[str, ...]]] = {  # plural -> (group, Kind, versions newest first)
    GITREPOSITORIES: (SOURCE_GROUP, "GitRepository", ("v1",)),
    KUSTOMIZATIONS: (KUSTOMIZE_GROUP, "Kustomization", ("v1",)),
    # helm-controller served v2beta2 until Flux 2.3 and v2 since; older clusters are still about.
    HELMRELEASES: (HELM_GROUP, "HelmRelease", ("v2", "v2beta2", "v2beta1")),
}
PLURAL_OF_KIND = {kind: plural for plural, (_, kind, _) in KINDS.items()}

# -- metadata -----------------------------------------------------------------------------------
# meta.ReconcileRequestAnnotation; the controllers copy its value to status.lastHandledReconcileAt.
REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"
# Labels kustomize-controller puts on everything a Kustomization applies (its owner).
OWNER_NAME_LABEL = "kustomize.toolkit.fluxcd.io/name"
OWNER_NAMESPACE_LABEL = "kustomize.toolkit.fluxcd.io/namespace"

# -- condition types (meta, source-controller, helm-controller) -----------------------------------
READY, STALLED, RECONCILING, HEALTHY = "Ready", "Stalled", "Reconciling", "Healthy"
ARTIFACT_IN_STORAGE, FETCH_FAILED = "ArtifactInStorage", "FetchFailed"
RELEASED, REMEDIATED, TEST_SUCCESS = "Released", "Remediated", "TestSuccess"

# -- reasons --------------------------------------------------------------------------------------
# meta (fluxcd/pkg apis/meta/conditions.go)
SUCCEEDED, FAILED, PROGRESSING = "Succeeded", "Failed", "Progressing"
PROGRESSING_WITH_RETRY = "ProgressingWithRetry"
DEPENDENCY_NOT_READY = "DependencyNotReady"
ARTIFACT_FAILED = "ArtifactFailed"
BUILD_FAILED, HEALTH_CHECK_FAILED, PRUNE_FAILED = "BuildFailed", "HealthCheckFailed", "PruneFailed"
HEALTH_CHECK_CANCELED = "HealthCheckCanceled"
RECONCILIATION_SUCCEEDED, RECONCILIATION_FAILED = "ReconciliationSucceeded", "ReconciliationFailed"
# source-controller api/v1 (condition_types.go, gitrepository_types.go)
GIT_OPERATION_SUCCEEDED, GIT_OPERATION_FAILED = "GitOperationSucceeded", "GitOperationFailed"
AUTHENTICATION_FAILED, URL_INVALID = "AuthenticationFailed", "URLInvalid"
# helm-controller api/v2 condition_types.go; SourceNotReady and RetriesExceeded are literals in
# helmrelease_controller.go and reconcile/atomic_release.go.
INSTALL_SUCCEEDED, INSTALL_FAILED = "InstallSucceeded", "InstallFailed"
UPGRADE_SUCCEEDED, UPGRADE_FAILED = "UpgradeSucceeded", "UpgradeFailed"
ROLLBACK_SUCCEEDED, ROLLBACK_FAILED = "RollbackSucceeded", "RollbackFailed"
SOURCE_NOT_READY = "SourceNotReady"
RETRIES_EXCEEDED = "RetriesExceeded"
# status.history[].status of a HelmRelease snapshot (Helm's release statuses)
DEPLOYED, SUPERSEDED = "deployed", "superseded"

# Reasons that mean "waiting on something else, will retry by itself": progress, never a verdict.
# kustomize-controller: ArtifactFailed "Source artifact not found, retrying in 30s", DependencyNotReady
# "Dependencies do not meet ready condition, retrying", HealthCheckCanceled "New reconciliation
# triggered"; helm-controller: SourceNotReady (chart not ready yet).
TEMPORARY_REASONS = frozenset({PROGRESSING, PROGRESSING_WITH_RETRY, DEPENDENCY_NOT_READY, SOURCE_NOT_READY,
                               HEALTH_CHECK_CANCELED})
# Source failures a human must fix (a tag that does not exist, credentials): reported with the cause.
SOURCE_FAILURES = frozenset({GIT_OPERATION_FAILED, AUTHENTICATION_FAILED, URL_INVALID})

Kstatus = Literal["current", "in_progress", "failed", "suspended"]


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any] | None:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return cond
    return None


def is_true(obj: dict[str, Any] | None, kind: str) -> bool:
    return (condition(obj, kind) or {}).get("status") == "True"


def ready(obj: dict[str, Any] | None) -> tuple[str, str, str]:
    """(status, reason, message) of the Ready condition; ('Unknown', '', '') without one."""
    cond = condition(obj, READY) or {}
    return str(cond.get("status", "Unknown")), str(cond.get("reason", "")), str(cond.get("message", ""))


def temporary(obj: dict[str, Any] | None) -> bool:
    """Ready=False for a reason Flux retries by itself (waiting on a source or a dependency)."""
    _, reason, message = ready(obj)
    # ArtifactFailed is both "source artifact not found, retrying" (waiting) and a real fetch error.
    return reason in TEMPORARY_REASONS or (reason == ARTIFACT_FAILED and "retrying" in message)


def retrying(obj: dict[str, Any] | None) -> bool:
    """Failed, but the controller will try again (Reconciling=True, e.g. ProgressingWithRetry)."""
    return is_true(obj, RECONCILING) and not is_true(obj, STALLED)


def generation_observed(obj: dict[str, Any] | None) -> bool:
    meta, status = (obj or {}).get("metadata") or {}, (obj or {}).get("status") or {}
    return "observedGeneration" in status and status.get("observedGeneration") == meta.get("generation", 1)


def suspended(obj: dict[str, Any] | None) -> bool:
    return bool(((obj or {}).get("spec") or {}).get("suspend"))


def kstatus(obj: dict[str, Any] | None) -> Kstatus:
    """The object's state the way kstatus (and `flux reconcile`) computes it for Flux kinds."""
    if suspended(obj):
        return "suspended"
    if is_true(obj, STALLED):
        return "failed"
    if not generation_observed(obj) or is_true(obj, RECONCILING):
        return "in_progress"
    status = ready(obj)[0]
    return "current" if status == "True" else "failed" if status == "False" else "in_progress"


def name_of(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{obj.get('kind', 'object')} {meta.get('namespace', '')}/{meta.get('name', '')}"


def key_of(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace", "")), str(meta.get("name", ""))


def owner_of(obj: dict[str, Any] | None) -> tuple[str, str] | None:
    """(namespace, name) of the Kustomization that applied `obj`, from the labels it set."""
    labels = ((obj or {}).get("metadata") or {}).get("labels") or {}
    name = labels.get(OWNER_NAME_LABEL)
    return (str(labels.get(OWNER_NAMESPACE_LABEL) or ""), str(name)) if name else None


def revision(tag_or_branch: str, commit: str) -> str:
    """The artifact revision source-controller reports (`v0.4.0@sha1:<commit>`, `main@sha1:<commit>`)."""
    return f"{tag_or_branch}@sha1:{commit}"


def revision_parts(value: str) -> tuple[str, str]:
    """`v1.0.0-rc.1@sha1:abc` -> ('v1.0.0-rc.1', 'abc'); a bare sha -> ('', sha)."""
    ref, _, digest = value.rpartition("@")
    return ref, digest.split(":", 1)[-1]
