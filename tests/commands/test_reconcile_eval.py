"""Reading Flux status: applied, failed, still progressing (including the wrong revision applied)."""
from __future__ import annotations

from commands.reconcile import evaluate, seconds

NEW, OLD, OTHER = "v0.4.0@sha1:aaa", "v0.3.0@sha1:bbb", "v0.9.0@sha1:ccc"


def obj(kind: str, name: str, ready: str = "True", reason: str = "ReconciliationSucceeded", message: str = "",
        applied: str = NEW, attempted: str = NEW) -> dict:
    return {"kind": kind, "metadata": {"name": name, "namespace": "flux-system"},
            "status": {"conditions": [{"type": "Ready", "status": ready, "reason": reason, "message": message}],
                       "lastAppliedRevision": applied, "lastAttemptedRevision": attempted}}


def source(revision: str) -> dict:
    return {"kind": "GitRepository", "status": {"artifact": {"revision": revision}}}


def test_applied_needs_source_kustomization_and_children() -> None:
    assert evaluate(NEW, source(NEW), obj("Kustomization", "infra"), [obj("HelmRelease", "x")]).state == "applied"
    assert evaluate(NEW, source(OLD), obj("Kustomization", "infra")).state == "progressing"
    assert evaluate(NEW, source(NEW), obj("Kustomization", "infra"),
                    [obj("HelmRelease", "x", "Unknown", "Progressing")]).state == "progressing"


def test_the_wrong_revision_applied_is_not_success() -> None:
    state = evaluate(NEW, source(OTHER), obj("Kustomization", "infra", applied=OTHER, attempted=OTHER))
    assert state.state == "progressing" and OTHER in state.summary  # a timeout reports it, never "applied"


def test_failures_name_the_failing_object() -> None:
    build = evaluate(NEW, source(NEW), obj("Kustomization", "infra", "False", "BuildFailed", "kustomize build failed",
                                          applied=OLD))
    assert (build.state, build.failing, build.message) == ("failed", "Kustomization flux-system/infra", "kustomize build failed")
    child = evaluate(NEW, source(NEW), obj("Kustomization", "infra", "False", "HealthCheckFailed", "x", applied=OLD),
                     [obj("HelmRelease", "nginx", "False", "InstallFailed", "timed out")])
    assert child.failing == "HelmRelease flux-system/nginx" and child.message == "timed out"
    # an old failure on a revision Flux is not working on yet is not this change's failure
    stale = evaluate(NEW, source(OLD), obj("Kustomization", "infra", "False", "BuildFailed", applied=OLD, attempted=OLD))
    assert stale.state == "progressing"
    assert evaluate(NEW, None, None).state == "failed"


def test_go_durations() -> None:
    assert seconds("5m", 0) == 300 and seconds("1m30s", 0) == 90 and seconds("", 42) == 42 and seconds("1h", 0) == 3600
