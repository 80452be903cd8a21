"""Reading Flux's status: did the cluster apply the release it was promoted to?

Pure functions over the objects as the Kubernetes API returns them (dicts); `bot/cluster.py`
fetches and watches them, `bot/follow.py` posts what changes. Also the `reconcile` command.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Literal

from commands.args import resolve_cluster
from commands.context import CommandSpec, Context
from commands.model import ReconcileAction

# Reasons Flux uses while it is still working: not a failure yet.
_IN_PROGRESS = {"Progressing", "ProgressingWithRetry", "DependencyNotReady", "ReconciliationInProgress",
                "ArtifactInStorage", "Reconciling", "InstallSucceeded", "UpgradeSucceeded"}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s)")


@dataclass(frozen=True)
class FluxState:
    state: Literal["progressing", "applied", "failed"]
    summary: str
    failing: str = ""  # "HelmRelease ingress-nginx/ingress-nginx"
    message: str = ""


def ready(obj: dict[str, Any]) -> tuple[str, str, str]:
    """(status, reason, message) of the Ready condition; ('Unknown', '', '') without one."""
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return str(condition.get("status", "Unknown")), str(condition.get("reason", "")), str(condition.get("message", ""))
    return "Unknown", "", ""


def name_of(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{obj.get('kind', 'object')} {meta.get('namespace', '')}/{meta.get('name', '')}"


def evaluate(expected: str, source: dict[str, Any] | None, kustomization: dict[str, Any] | None,
             children: Iterable[dict[str, Any]] = ()) -> FluxState:
    """Where the reconcile of `expected` (`v0.4.0@sha1:<commit>`) stands."""
    if source is None or kustomization is None:
        return FluxState("failed", "the Flux objects of the cluster are missing",
                         "GitRepository/Kustomization", "not found in the cluster")
    status = kustomization.get("status") or {}
    ready_status, reason, message = ready(kustomization)
    attempted, applied = status.get("lastAttemptedRevision", ""), status.get("lastAppliedRevision", "")
    children = list(children)
    revision = ((source.get("status") or {}).get("artifact") or {}).get("revision", "")
    # Flux is working on `expected` once the source fetched it or a Kustomization attempted it.
    in_flight = expected in (attempted, revision) or any(
        (c.get("status") or {}).get("lastAttemptedRevision") == expected for c in children)
    # The failing child names the real cause; the parent's message only aggregates it.
    failing = [c for c in children if ready(c)[0] == "False" and ready(c)[1] not in _IN_PROGRESS]
    if failing and in_flight:
        child = failing[0]
        return FluxState("failed", f"{ready(child)[1]} in {name_of(child)}", name_of(child), ready(child)[2])
    if ready_status == "False" and reason not in _IN_PROGRESS and attempted == expected:
        return FluxState("failed", f"{reason}: applying {expected} failed", name_of(kustomization), message)
    if (revision == expected and applied == expected and ready_status == "True"
            and all(ready(c)[0] == "True" for c in children)):
        return FluxState("applied", f"applied {expected}" + (f" with {len(children)} child objects ready" if children else ""))
    return FluxState("progressing", f"source at {revision or '?'}, applied {applied or '?'}, attempted {attempted or '?'}")


def expected_revision(tag: str, commit: str) -> str:
    """The artifact revision Flux reports for a tag (`v0.4.0@sha1:<commit>`)."""
    return f"{tag}@sha1:{commit}"


def seconds(duration: str, default: float) -> float:
    """A Go duration (`5m`, `1m30s`, `10s`) in seconds."""
    parts = _DURATION.findall(duration or "")
    if not parts:
        return default
    scale = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(float(n) * scale[u] for n, u in parts)


def parse(words: list[str]) -> str:
    return SPEC.one_cluster(words)


def run(cluster: str, ctx: Context) -> ReconcileAction:
    resolve_cluster(ctx.repo, cluster)
    return ReconcileAction(cluster)


SPEC = CommandSpec(
    verb="reconcile",
    usage="reconcile <cluster>",
    summary="Ask Flux to reconcile the cluster's infrastructure now (source and Kustomization).",
    parse=parse,
    run=run,
    examples=("reconcile prod-eu",),
    action="reconcile",
    targets=lambda cluster: (cluster,),
)
