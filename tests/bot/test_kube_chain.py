"""The chain verdict on hand-made Flux objects: what counts as applied, failed, or still progressing."""
from __future__ import annotations

import copy

from bot.kube import flux
from bot.kube.chain import Objects, Target, evaluate
from bot.kube.follower import budget, tag_of
from commands.model import PullRequest

NEW, OLD = "v0.4.0-rc.1@sha1:aaa", "v0.3.0@sha1:bbb"
TARGET = Target("flux-system", "infrastructure", "infrastructure", "v0.4.0-rc.1", NEW, merge="m2",
                owner_before="main@sha1:m1")


def cond(kind: str, status: str, reason: str, message: str = "") -> dict:
    return {"type": kind, "status": status, "reason": reason, "message": message}


def ks(name: str, owner: str, applied: str = NEW, attempted: str = "", ready: tuple = ("True", "ReconciliationSucceeded"),
       extra: tuple = (), source: str = "infrastructure", generation: int = 1, observed: int = 1, **spec) -> dict:
    return {"kind": "Kustomization",
            "metadata": {"name": name, "namespace": "flux-system", "generation": generation, "resourceVersion": "10",
                         "labels": {flux.OWNER_NAME_LABEL: owner, flux.OWNER_NAMESPACE_LABEL: "flux-system"} if owner else {}},
            "spec": {"interval": "5m", "sourceRef": {"kind": "GitRepository", "name": source}, **spec},
            "status": {"observedGeneration": observed, "lastAppliedRevision": applied,
                       "lastAttemptedRevision": attempted or applied,
                       "conditions": [cond("Ready", *ready), *extra]}}


def hr(name: str, owner: str, ready: tuple = ("True", "UpgradeSucceeded"), generation: int = 2, attempted_generation: int = 2,
       observed: int = 2, history: str = "deployed", extra: tuple = ()) -> dict:
    return {"kind": "HelmRelease", "metadata": {"name": name, "namespace": name, "generation": generation,
                                                "resourceVersion": "11",
                                                "labels": {flux.OWNER_NAME_LABEL: owner,
                                                           flux.OWNER_NAMESPACE_LABEL: "flux-system"}},
            "spec": {"chart": {"spec": {"chart": name, "version": "1.0.0"}}},
            "status": {"observedGeneration": observed, "lastAttemptedGeneration": attempted_generation,
                       "lastAttemptedRevision": "1.0.0", "conditions": [cond("Ready", *ready), *extra],
                       "history": [{"status": history, "chartVersion": "1.0.0", "version": 3}]}}


def git(name: str, ref: dict, artifact: str, ready: tuple = ("True", "Succeeded"), generation: int = 2, observed: int = 2,
        extra: tuple = (), owner: str = "") -> dict:
    return {"kind": "GitRepository", "metadata": {"name": name, "namespace": "flux-system", "generation": generation,
                                                  "labels": {flux.OWNER_NAME_LABEL: owner,
                                                             flux.OWNER_NAMESPACE_LABEL: "flux-system"} if owner else {}},
            "spec": {"interval": "1m", "ref": ref},
            "status": {"observedGeneration": observed, "artifact": {"revision": artifact},
                       "conditions": [cond("Ready", *ready), *extra]}}


def cluster(**replace: dict) -> Objects:
    objects = {
        ("gitrepositories", "flux-system"): git("flux-system", {"branch": "main"}, "main@sha1:m2"),
        ("kustomizations", "flux-system"): ks("flux-system", "", applied="main@sha1:m2", source="flux-system",
                                              interval="10m"),
        ("gitrepositories", "infrastructure"): git("infrastructure", {"tag": "v0.4.0-rc.1"}, NEW, owner="flux-system"),
        ("kustomizations", "infrastructure"): ks("infrastructure", "flux-system", timeout="5m"),
        ("kustomizations", "eso"): ks("eso", "infrastructure", timeout="2m"),
        ("kustomizations", "nginx"): ks("nginx", "infrastructure", timeout="3m", dependsOn=[{"name": "eso"}]),
        ("helmreleases", "ingress-nginx"): hr("ingress-nginx", "nginx"),
    }
    objects.update({tuple(k.split("/")): v for k, v in replace.items()})
    items: dict = {}
    for (plural, _), obj in objects.items():
        items.setdefault(plural, {})[flux.key_of(obj)] = copy.deepcopy(obj)
    return Objects(items)


def test_applied_needs_every_object_of_the_chain_current_at_the_revision() -> None:
    verdict = evaluate(TARGET, cluster())
    assert verdict.state == "applied" and len(verdict.decisive) == 4
    # each one held back alone keeps it progressing
    for change in ({"kustomizations/nginx": ks("nginx", "infrastructure", applied=OLD)},
                   {"kustomizations/eso": ks("eso", "infrastructure", generation=2, observed=1)},
                   {"helmreleases/ingress-nginx": hr("ingress-nginx", "nginx", generation=3)},
                   {"helmreleases/ingress-nginx": hr("ingress-nginx", "nginx", history="failed")},
                   {"gitrepositories/infrastructure": git("infrastructure", {"tag": "v0.4.0-rc.1"}, OLD,
                                                          owner="flux-system")},
                   {"gitrepositories/infrastructure": git("infrastructure", {"tag": "v0.3.0"}, NEW, owner="flux-system")},
                   {"kustomizations/flux-system": ks("flux-system", "", applied="main@sha1:m1", source="flux-system")}):
        assert evaluate(TARGET, cluster(**change)).state == "progressing", change


def test_the_owner_applied_something_newer_than_the_merge() -> None:
    newer = {"kustomizations/flux-system": ks("flux-system", "", applied="main@sha1:m3", source="flux-system")}
    assert evaluate(TARGET, cluster(**newer)).state == "applied"


def test_failures_count_only_for_this_revision_and_when_terminal() -> None:
    stale = ks("nginx", "infrastructure", applied=OLD, ready=("False", flux.BUILD_FAILED, "old"))
    assert evaluate(TARGET, cluster(**{"kustomizations/nginx": stale})).state == "progressing"
    retried = ks("nginx", "infrastructure", applied=OLD, attempted=NEW, ready=("False", flux.BUILD_FAILED, "boom"),
                 extra=(cond("Reconciling", "True", flux.PROGRESSING_WITH_RETRY),))
    verdict = evaluate(TARGET, cluster(**{"kustomizations/nginx": retried}))
    assert (verdict.state, verdict.retrying, verdict.failing) == ("progressing", True, "Kustomization flux-system/nginx")
    stalled = ks("nginx", "infrastructure", applied=OLD, attempted=NEW, ready=("False", flux.BUILD_FAILED, "boom"),
                 extra=(cond("Stalled", "True", flux.BUILD_FAILED),))
    verdict = evaluate(TARGET, cluster(**{"kustomizations/nginx": stalled}))
    assert (verdict.state, verdict.message, verdict.running) == ("failed", "boom", NEW)
    for reason, message in ((flux.DEPENDENCY_NOT_READY, "dependency 'flux-system/eso' is not ready"),
                            (flux.ARTIFACT_FAILED, "Source artifact not found, retrying in 30s"),
                            (flux.HEALTH_CHECK_CANCELED, "New reconciliation triggered")):
        waiting = ks("nginx", "infrastructure", applied=OLD, attempted=NEW, ready=("False", reason, message))
        assert evaluate(TARGET, cluster(**{"kustomizations/nginx": waiting})).state == "progressing", reason


def test_a_helm_release_fails_for_this_revision_only_once_its_new_generation_was_tried() -> None:
    exceeded = (cond("Stalled", "True", flux.RETRIES_EXCEEDED, "Failed to upgrade after 1 attempt(s)"),)
    old_failure = hr("ingress-nginx", "nginx", ready=("False", flux.UPGRADE_FAILED, "x"), generation=3,
                     attempted_generation=2, observed=2, extra=exceeded)
    assert evaluate(TARGET, cluster(**{"helmreleases/ingress-nginx": old_failure})).state == "progressing"
    failure = hr("ingress-nginx", "nginx", ready=("False", flux.UPGRADE_FAILED, "hooks"), generation=3,
                 attempted_generation=3, observed=2, extra=exceeded)
    verdict = evaluate(TARGET, cluster(**{"helmreleases/ingress-nginx": failure}))
    assert (verdict.state, verdict.failing) == ("failed", "HelmRelease ingress-nginx/ingress-nginx")
    not_ready = hr("ingress-nginx", "nginx", ready=("False", flux.SOURCE_NOT_READY, "chart"), generation=3,
                   attempted_generation=3)
    assert evaluate(TARGET, cluster(**{"helmreleases/ingress-nginx": not_ready})).state == "progressing"


def test_suspended_and_source_failures() -> None:
    suspended = ks("infrastructure", "flux-system", suspend=True)
    verdict = evaluate(TARGET, cluster(**{"kustomizations/infrastructure": suspended}))
    assert verdict.state == "suspended" and "Kustomization flux-system/infrastructure is suspended" in verdict.summary
    missing = git("infrastructure", {"tag": "v0.4.0-rc.1"}, OLD, ready=("False", flux.GIT_OPERATION_FAILED, "no ref"),
                  observed=1, owner="flux-system", extra=(cond("FetchFailed", "True", flux.GIT_OPERATION_FAILED),))
    verdict = evaluate(TARGET, cluster(**{"gitrepositories/infrastructure": missing}))
    assert (verdict.state, verdict.source_failure, verdict.message) == ("failed", True, "no ref")
    auth = git("flux-system", {"branch": "main"}, "main@sha1:m1", ready=("False", flux.AUTHENTICATION_FAILED, "401"))
    behind = git("infrastructure", {"tag": "v0.3.0"}, OLD, owner="flux-system")
    verdict = evaluate(TARGET, cluster(**{"gitrepositories/flux-system": auth, "gitrepositories/infrastructure": behind}))
    assert (verdict.state, verdict.failing) == ("failed", "GitRepository flux-system/flux-system")


def test_the_budget_follows_intervals_and_dependson_chains() -> None:
    # flux-system 10m + source 1m + nginx 3m after eso 2m (the longest chain) + helm's default 5m
    assert budget(TARGET, cluster()) == (10 + 1 + 5 + 5) * 60


def test_pre_release_tags_and_dashed_clusters() -> None:
    pr = PullRequest(1, "t", "u", "fluxbot/promote-prod-eu-v1.0.0-rc.1", "prod-eu", "promotion")
    assert tag_of(pr) == "v1.0.0-rc.1"
    assert tag_of(PullRequest(2, "t", "u", "fluxbot/rollback-demo-v0.3.0", "demo", "rollback")) == "v0.3.0"
    assert flux.revision_parts(NEW) == ("v0.4.0-rc.1", "aaa")


def test_an_object_in_an_inventory_that_the_caches_have_not_seen_is_not_applied_yet() -> None:
    nginx = ks("nginx", "infrastructure", timeout="3m", dependsOn=[{"name": "eso"}])
    nginx["status"]["inventory"] = {"entries": [
        {"id": "ingress-nginx_ingress-nginx_helm.toolkit.fluxcd.io_HelmRelease", "v": "v2"},
        {"id": "ingress-nginx_cert-manager_helm.toolkit.fluxcd.io_HelmRelease", "v": "v2"},  # new in this release
        {"id": "ingress-nginx__Namespace", "v": "v1"}]}
    verdict = evaluate(TARGET, cluster(**{"kustomizations/nginx": nginx}))
    assert verdict.state == "progressing" and "HelmRelease ingress-nginx/cert-manager" in verdict.summary
    nginx["status"]["inventory"]["entries"].pop(1)
    assert evaluate(TARGET, cluster(**{"kustomizations/nginx": nginx})).state == "applied"
