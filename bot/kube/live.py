"""What `status`, the release gate and `reconcile <cluster>` need from a cluster, read from the
shared informers and limited to the infrastructure chain (`bot.kube.chain`)."""
from __future__ import annotations

import time
from typing import Any

from bot.kube import chain, flux
from bot.kube.chain import Objects, Target
from bot.kube.client import ClusterError
from bot.kube.informers import Informers

SYNC_WAIT = 10.0  # seconds a reply waits for a cluster's caches to fill


class NotReachable(Exception):
    """The cluster's caches could not be filled; the message says why."""


def objects(informers: Informers, cluster: str) -> Objects:
    running = informers.of(cluster)
    if not running.wait_synced(SYNC_WAIT) or not running.informers:
        raise NotReachable(running.errors() or f"cluster `{cluster}` did not answer within {SYNC_WAIT:.0f} s")
    return running.snapshot()


def summary(informers: Informers, cluster: str, target: Target) -> dict[str, Any]:
    """The infrastructure Kustomization's state and every chain object that is not Current."""
    try:
        found = objects(informers, cluster)
    except NotReachable as error:
        return {"error": str(error)}
    infra = found.get(flux.KUSTOMIZATIONS, target.namespace, target.kustomization)
    if infra is None:
        return {"missing": True}
    status = infra.get("status") or {}
    ready, reason, message = flux.ready(infra)
    problems = [f"{flux.name_of(o)}: {flux.ready(o)[1]} {flux.ready(o)[2]}".strip()
                for o in chain.chain(target, found) if o is not infra and flux.kstatus(o) != "current"]
    return {"ready": ready, "reason": reason, "message": message,
            "applied": status.get("lastAppliedRevision", ""), "attempted": status.get("lastAttemptedRevision", ""),
            "suspended": flux.suspended(infra), "current": flux.kstatus(infra) == "current", "problems": problems}


def reconcile_now(informers: Informers, cluster: Any, target: Target, wait: float = 20.0) -> list[str]:
    """`flux reconcile ks --with-source` along the chain: refuse suspended objects, then each pair
    (the owner's source and Kustomization, then the infrastructure ones) source first, each waited
    for until its status.lastHandledReconcileAt shows the request. Lines saying what happened."""
    found = objects(informers, cluster.name)
    pairs = []
    owner = chain._owner(found, found.get(flux.GITREPOSITORIES, target.namespace, target.source))
    owner_pair = (chain._source_of(found, owner), owner) if owner is not None else (None, None)
    infra_pair = (found.get(flux.GITREPOSITORIES, target.namespace, target.source),
                  found.get(flux.KUSTOMIZATIONS, target.namespace, target.kustomization))
    for pair in (owner_pair, infra_pair):
        if all(o is not None for o in pair) and pair not in pairs:
            pairs.append(pair)
    if not pairs:
        raise ClusterError(f"Kustomization {target.namespace}/{target.kustomization} or its GitRepository "
                           f"`{target.source}` is not on cluster `{cluster.name}`", status=404)
    for obj in (o for pair in pairs for o in pair):
        if flux.suspended(obj):
            raise ClusterError(f"{flux.name_of(obj)} is suspended, so Flux would ignore the request "
                               f"(`flux resume` it first)", status=409)
    lines = []
    for pair in pairs:
        for obj in pair:
            plural = flux.PLURAL_OF_KIND[obj["kind"]]
            namespace, name = flux.key_of(obj)
            stamp = cluster.request_reconcile(plural, name, namespace)
            handled = _handled(informers, cluster.name, plural, namespace, name, stamp, wait)
            lines.append(f"{flux.name_of(obj)}: " + (_outcome(handled) if handled is not None else
                                                     f"asked at {stamp}; not handled within {wait:.0f} s "
                                                     "(is its controller running?)"))
    return lines


def _handled(informers: Informers, cluster: str, plural: str, namespace: str, name: str, stamp: str,
             wait: float) -> dict[str, Any] | None:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        obj = informers.of(cluster).snapshot().get(plural, namespace, name)
        if ((obj or {}).get("status") or {}).get("lastHandledReconcileAt") == stamp:
            return obj
        time.sleep(0.05)
    return None


def _outcome(obj: dict[str, Any]) -> str:
    status = obj.get("status") or {}
    ready, reason, message = flux.ready(obj)
    revision = status.get("lastAppliedRevision") or (status.get("artifact") or {}).get("revision", "")
    return f"reconciled, Ready={ready}" + (f" ({reason}: {message})" if ready != "True" else "") + (
        f", at {revision}" if revision else "")
