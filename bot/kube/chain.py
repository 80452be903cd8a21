"""Where a pin change stands in the chain of Flux objects that carries it: a pure verdict.

The chain, as Flux applies a merge to `clusters/<c>/infrastructure.yaml` (flux-demo's layout):
1. the owner of the infrastructure GitRepository (the `flux-system` Kustomization, found through the
   `kustomize.toolkit.fluxcd.io/name|namespace` labels it sets) applies `main@sha1:<merge>`, so the
   GitRepository's `spec.ref.tag` becomes the new tag;
2. the infrastructure GitRepository fetches it: `status.artifact.revision == <tag>@sha1:<peeled>`;
3. the infrastructure Kustomization, then every Kustomization and HelmRelease it (transitively)
   applies, reach that revision.
"Applied" needs each one Current the way kstatus means it (observedGeneration == generation,
Ready=True) and at the right revision. A failure counts only when it belongs to this revision and
is terminal (Stalled, or Ready=False with no retry coming); failures Flux retries are progress
until the follower's deadline. Callers: `bot/kube/follower.py`, `status`, the release gate.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from bot.kube import flux
from bot.kube.flux import GITREPOSITORIES, HELMRELEASES, KUSTOMIZATIONS

State = Literal["progressing", "applied", "failed", "suspended"]


@dataclass(frozen=True)
class Target:
    """What one follow waits for on one cluster."""

    namespace: str  # where the Flux objects live (flux-system)
    source: str  # the infrastructure GitRepository
    kustomization: str  # the infrastructure Kustomization
    tag: str
    expected: str  # `<tag>@sha1:<peeled commit>`
    merge: str = ""  # the merge commit the owner must apply; '' when unknown
    owner_before: str = ""  # the owner's lastAppliedRevision when the follow began


@dataclass
class Objects:
    """A read-only view of a cluster's Flux objects by kind and (namespace, name)."""

    items: dict[str, dict[tuple[str, str], dict[str, Any]]] = field(default_factory=dict)

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.items.get(plural, {}).get((namespace, name))

    def owned_by(self, plural: str, namespace: str, name: str) -> list[dict[str, Any]]:
        return [o for key, o in sorted(self.items.get(plural, {}).items()) if flux.owner_of(o) == (namespace, name)]


@dataclass(frozen=True)
class Verdict:
    state: State
    summary: str
    failing: str = ""  # "HelmRelease ingress-nginx/ingress-nginx"
    message: str = ""  # the controller's own words
    source_failure: bool = False  # the source cannot fetch (missing tag, auth): say so at once
    retrying: bool = False  # failing on this revision, but Flux retries: a failure only at the deadline
    running: str = ""  # the revision the infrastructure Kustomization applied last (what runs)
    decisive: tuple[dict[str, Any], ...] = field(default=(), repr=False)  # what "applied" rests on


def chain(target: Target, objects: Objects) -> list[dict[str, Any]]:
    """The objects that carry the change, in the order Flux applies them (owner chain first)."""
    found: list[dict[str, Any]] = []
    source = objects.get(GITREPOSITORIES, target.namespace, target.source)
    owner = _owner(objects, source)
    if owner is not None:
        owner_source = _source_of(objects, owner)
        found += [o for o in (owner_source, owner) if o is not None]
    if source is not None:
        found.append(source)
    found += _applied_tree(objects, target.namespace, target.kustomization)
    return found


def evaluate(target: Target, objects: Objects) -> Verdict:
    source = objects.get(GITREPOSITORIES, target.namespace, target.source)
    infra = objects.get(KUSTOMIZATIONS, target.namespace, target.kustomization)
    running = str(((infra or {}).get("status") or {}).get("lastAppliedRevision", ""))
    if source is None or infra is None:
        missing = (f"GitRepository {target.namespace}/{target.source}" if source is None
                   else f"Kustomization {target.namespace}/{target.kustomization}")
        return Verdict("failed", f"{missing} is not on the cluster", missing, "not found", running=running)
    for obj in chain(target, objects):
        if flux.suspended(obj):
            return Verdict("suspended", f"{flux.name_of(obj)} is suspended: Flux applies nothing through it until "
                                        "it is resumed", flux.name_of(obj), running=running)
    owner = _owner(objects, source)
    if _spec_tag(source) != target.tag or not _owner_applied(target, owner):
        return _waiting_for_owner(target, objects, owner, source, running)
    verdict = _source(target, source, running)
    if verdict is not None:
        return verdict
    return _appliers(target, objects, running)


def _waiting_for_owner(target: Target, objects: Objects, owner: dict[str, Any] | None, source: dict[str, Any],
                       running: str) -> Verdict:
    where = (f"{flux.name_of(source)} still has `spec.ref.tag: {_spec_tag(source) or '?'}`"
             if _spec_tag(source) != target.tag else f"{flux.name_of(source)} has `spec.ref.tag: {target.tag}`")
    if owner is None:
        return Verdict("progressing", f"{where}; waiting for the merge to reach the cluster", running=running)
    owner_source = _source_of(objects, owner)
    if owner_source is not None and _fetch_failed(owner_source):
        _, reason, message = flux.ready(owner_source)
        return Verdict("failed", f"{reason}: {flux.name_of(owner_source)} cannot fetch the merge",
                       flux.name_of(owner_source), message, source_failure=True, running=running)
    attempted = str((owner.get("status") or {}).get("lastAttemptedRevision", ""))
    mine = bool(target.merge) and flux.revision_parts(attempted)[1] == target.merge
    status, reason, message = flux.ready(owner)
    if mine and status == "False" and not flux.temporary(owner):
        return _failure(owner, f"{reason}: {flux.name_of(owner)} could not apply the merge", running)
    wanted = f"`{_owner_revision(owner_source, target.merge)}`" if target.merge else "the merge"
    return Verdict("progressing", f"{where}; waiting for {flux.name_of(owner)} to apply {wanted}"
                                  f" (applied {(owner.get('status') or {}).get('lastAppliedRevision') or '?'})",
                   running=running)


def _owner_applied(target: Target, owner: dict[str, Any] | None) -> bool:
    """The owner applied the merge, or something newer: main only moves forward after the merge,
    so any revision it applied since the follow began contains it."""
    if owner is None or not target.merge:
        return True
    applied = str((owner.get("status") or {}).get("lastAppliedRevision", ""))
    return flux.revision_parts(applied)[1] == target.merge or bool(target.owner_before and applied != target.owner_before)


def _source(target: Target, source: dict[str, Any], running: str) -> Verdict | None:
    """None once the source serves the expected artifact; else why not."""
    artifact = str((((source.get("status") or {}).get("artifact")) or {}).get("revision", ""))
    status, reason, message = flux.ready(source)
    if artifact == target.expected and flux.generation_observed(source) and status == "True":
        return None
    if _fetch_failed(source):
        # source-controller keeps the old artifact and retries with backoff; a missing tag or bad
        # credentials need a human, so they are reported now, with the controller's message.
        return Verdict("failed", f"{reason}: {flux.name_of(source)} cannot fetch `{target.tag}`",
                       flux.name_of(source), message, source_failure=True, running=running)
    ref, _ = flux.revision_parts(artifact)
    if ref == target.tag and artifact != target.expected and flux.generation_observed(source) and status == "True":
        return Verdict("failed", f"{flux.name_of(source)} fetched `{artifact}`, not `{target.expected}`: "
                                 f"the tag `{target.tag}` points at another commit on the cluster's remote",
                       flux.name_of(source), message, running=running)
    return Verdict("progressing", f"{flux.name_of(source)} is fetching `{target.tag}` (artifact {artifact or '?'})",
                   running=running)


def _appliers(target: Target, objects: Objects, running: str) -> Verdict:
    pending: list[str] = []
    retrying: Verdict | None = None
    tree = _applied_tree(objects, target.namespace, target.kustomization)
    for obj in tree:
        done, mine = _kustomization(obj, target) if obj.get("kind") == "Kustomization" else _release(obj, objects, target)
        if done:
            continue
        status, reason, message = flux.ready(obj)
        if mine and status == "False" and not flux.temporary(obj):
            verdict = _failure(obj, f"{reason} in {flux.name_of(obj)}", running)
            if not verdict.retrying:
                return verdict
            retrying = retrying or verdict
        pending.append(_progress_line(obj, target))
    pending += _unseen(tree, objects)
    if not pending:
        return Verdict("applied", f"applied {target.expected}" + (f" with {len(tree) - 1} child objects ready"
                                                                  if len(tree) > 1 else ""),
                       running=running, decisive=tuple(tree))
    if retrying is not None:
        return Verdict("progressing", f"retrying: {retrying.summary}", retrying.failing, retrying.message,
                       retrying=True, running=running)
    return Verdict("progressing", pending[0] + (f" (and {len(pending) - 1} more)" if len(pending) > 1 else ""),
                   running=running)


def _unseen(tree: list[dict[str, Any]], objects: Objects) -> list[str]:
    """Flux objects a Kustomization's inventory lists that the caches have not seen yet (a new
    HelmRelease of this release, its watch event still on the way): not applied before they are."""
    missing = []
    for obj in tree:
        for entry in (((obj.get("status") or {}).get("inventory") or {}).get("entries") or []):
            namespace, name, group, kind = (str(entry.get("id", "")).split("_") + ["", "", "", ""])[:4]
            plural = flux.PLURAL_OF_KIND.get(kind)
            if plural in (KUSTOMIZATIONS, HELMRELEASES) and flux.KINDS[plural][0] == group \
                    and objects.get(plural, namespace, name) is None and plural in objects.items:
                missing.append(f"{kind} {namespace}/{name} (applied by {flux.name_of(obj)}, not seen yet)")
    return missing


def _kustomization(obj: dict[str, Any], target: Target) -> tuple[bool, bool]:
    """(applied, a failure here would be this revision's) for a Kustomization of the chain."""
    status = obj.get("status") or {}
    same_source = ((obj.get("spec") or {}).get("sourceRef") or {}).get("name") == target.source
    at_revision = not same_source or status.get("lastAppliedRevision") == target.expected
    mine = not same_source or status.get("lastAttemptedRevision") == target.expected
    return flux.kstatus(obj) == "current" and at_revision, mine


def _release(obj: dict[str, Any], objects: Objects, target: Target) -> tuple[bool, bool]:
    """(applied, this revision's) for a HelmRelease: its owner applied the revision, helm-controller
    released the generation it got, and the newest status.history entry is that release, deployed."""
    owner = _owner(objects, obj)
    owner_status = (owner or {}).get("status") or {}
    owner_attempted = owner is None or owner_status.get("lastAttemptedRevision") == target.expected
    status = obj.get("status") or {}
    generation = (obj.get("metadata") or {}).get("generation", 1)
    mine = owner_attempted and status.get("lastAttemptedGeneration", status.get("observedGeneration")) == generation
    history = status.get("history") or []
    released = not history or (
        history[0].get("status") == flux.DEPLOYED
        and status.get("lastAttemptedRevision", history[0].get("chartVersion")) == history[0].get("chartVersion")
        and status.get("lastAttemptedConfigDigest", history[0].get("configDigest")) == history[0].get("configDigest"))
    return flux.kstatus(obj) == "current" and released and owner_attempted, mine


def _failure(obj: dict[str, Any], summary: str, running: str) -> Verdict:
    # Stalled (RetriesExceeded, ...) is terminal; Ready=False with Reconciling=True means Flux
    # retries (ProgressingWithRetry): a failure only if it still fails at the deadline.
    return Verdict("failed", summary, flux.name_of(obj), flux.ready(obj)[2], running=running,
                   retrying=flux.retrying(obj))


def _progress_line(obj: dict[str, Any], target: Target) -> str:
    status = obj.get("status") or {}
    _, reason, message = flux.ready(obj)
    if not flux.generation_observed(obj):
        where = "has not observed its new spec yet"
    elif obj.get("kind") == "Kustomization":
        where = f"applied {status.get('lastAppliedRevision') or '?'}"
    else:
        where = f"release {((status.get('history') or [{}])[0]).get('chartVersion') or '?'}"
    note = f" ({reason}: {message})" if reason and reason not in (flux.RECONCILIATION_SUCCEEDED,) and message else ""
    return f"{flux.name_of(obj)} {where}{note}"


def _applied_tree(objects: Objects, namespace: str, name: str) -> list[dict[str, Any]]:
    """The Kustomization and everything it applies, transitively (Kustomizations, HelmReleases)."""
    root = objects.get(KUSTOMIZATIONS, namespace, name)
    if root is None:
        return []
    found, queue, seen = [root], [(namespace, name)], {(namespace, name)}
    while queue:
        ns, owner = queue.pop(0)
        for child in objects.owned_by(KUSTOMIZATIONS, ns, owner):
            key = flux.key_of(child)
            if key not in seen:
                seen.add(key)
                found.append(child)
                queue.append(key)
        found += objects.owned_by(HELMRELEASES, ns, owner)
    return found


def _owner(objects: Objects, obj: dict[str, Any] | None) -> dict[str, Any] | None:
    key = flux.owner_of(obj)
    if key is None:
        return None
    namespace = key[0] or str(((obj or {}).get("metadata") or {}).get("namespace", ""))
    return objects.get(KUSTOMIZATIONS, namespace, key[1])


def _source_of(objects: Objects, kustomization: dict[str, Any]) -> dict[str, Any] | None:
    ref = (kustomization.get("spec") or {}).get("sourceRef") or {}
    namespace = ref.get("namespace") or (kustomization.get("metadata") or {}).get("namespace", "")
    return objects.get(GITREPOSITORIES, namespace, ref.get("name", "")) if ref.get("kind", "GitRepository") == "GitRepository" else None


def _spec_tag(source: dict[str, Any]) -> str:
    return str((((source.get("spec") or {}).get("ref")) or {}).get("tag", ""))


def _fetch_failed(source: dict[str, Any]) -> bool:
    status, reason, _ = flux.ready(source)
    return status == "False" and (reason in flux.SOURCE_FAILURES or flux.is_true(source, flux.FETCH_FAILED))


def _owner_revision(owner_source: dict[str, Any] | None, merge: str) -> str:
    branch = (((owner_source or {}).get("spec") or {}).get("ref") or {}).get("branch", "main")
    return flux.revision(branch, merge)
