"""`reconcile <cluster>`: ask Flux to reconcile the cluster's infrastructure chain now.

Pure: parses and resolves the cluster. `bot/kube/live.py` does what `flux reconcile ks
--with-source` does along the chain; `bot/kube/chain.py` reads Flux's status (it needs Flux's
vocabulary, which lives in `bot/kube/flux.py`).
"""
from __future__ import annotations

from commands.args import resolve_cluster
from commands.context import CommandSpec, Context
from commands.model import ReconcileAction


def parse(words: list[str]) -> str:
    return SPEC.one_cluster(words)


def run(cluster: str, ctx: Context) -> ReconcileAction:
    resolve_cluster(ctx.repo, cluster)
    return ReconcileAction(cluster)


SPEC = CommandSpec(
    verb="reconcile",
    usage="reconcile <cluster>",
    summary="Ask Flux to reconcile the cluster's infrastructure chain now (each source, then its Kustomization).",
    parse=parse,
    run=run,
    examples=("reconcile prod-eu",),
    action="reconcile",
    targets=lambda cluster: (cluster,),
)
