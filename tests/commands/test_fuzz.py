"""Fuzzing the pure core: any text and any damage to cluster YAML ends in a reply, never a crash."""
from __future__ import annotations

import dataclasses

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commands.context import Context
from commands.model import ChangePlan, CommandError, FreezeAction, Message, PrAction
from commands.registry import COMMANDS, plan
from commands.repo import RepoSnapshot
from tests.commands.conftest import build_reader
from tests.commands.memory import MemoryReader

WORDS = st.sampled_from(
    list(COMMANDS) + ["to", "like", "at", "set", "because", "from", "add", "remove", "merge", "close", "prod", "stage",
                      "lab", "v0.10.0", "v0.9.0", "0.2.0", "v9.9.9", "../x", "a=b", "x.y=1", "#3", "all", "/flux", ",", "'"]
)
TEXT = st.one_of(st.text(max_size=80), st.lists(st.one_of(WORDS, st.text(max_size=8)), max_size=8).map(" ".join))


def run(text: str, ctx: Context) -> object:
    try:
        outcome = plan(text, ctx)
    except CommandError as error:
        assert error.what
        return error
    assert isinstance(outcome, (Message, PrAction, FreezeAction, tuple))
    if isinstance(outcome, tuple):
        assert all(isinstance(p, ChangePlan) and p.edits for p in outcome)
    return outcome


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TEXT)
def test_any_text_gets_an_answer(text: str) -> None:
    run(text, Context(RepoSnapshot(build_reader()), "fuzz"))


MUTATION = st.tuples(st.sampled_from(["delete", "insert", "replace"]), st.integers(0, 2000), st.integers(1, 12),
                     st.text(alphabet=":-[]{}\"' \n\t#&*!|>%@`,?abc0123456789", max_size=12))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["clusters/prod/flux.yml", "clusters/stage/infra.yaml", "clusters/prod/apps/kustomization.yaml",
                        "CHANGELOG.md", "infrastructure/nginx/release.yaml"]),
       st.lists(MUTATION, min_size=1, max_size=4),
       st.sampled_from(["status", "status prod", "versions", "diff v0.2.0 v0.10.0", "promote v0.10.0 to stage",
                        "rollback prod", "rollback prod to v0.2.0", "app add podinfo to stage", "onboard new like prod",
                        "release v1.0.0", "prs", "audit prod", "app remove podinfo from prod",
                        "onboard new at v0.9.0 set meta_cluster_name=x"]))
def test_damaged_yaml_never_crashes_the_planner(path: str, mutations, command: str) -> None:
    reader = build_reader()
    head = dict(reader.commits[-1])
    text = bytearray(head[path])
    for kind, position, length, insert in mutations:
        at = position % (len(text) + 1)
        if kind == "delete":
            del text[at:at + length]
        elif kind == "insert":
            text[at:at] = insert.encode()
        else:
            text[at:at + length] = insert.encode()
    head[path] = bytes(text)
    damaged = MemoryReader([*reader.commits[:-1], head], {t: int(c) for t, c in reader.tags().items()})
    before = [dict(c) for c in damaged.commits]
    run(command, Context(RepoSnapshot(damaged), "fuzz"))
    assert damaged.commits == before  # planning never writes


def test_the_fuzzer_reaches_plans_and_refusals() -> None:
    ctx = Context(RepoSnapshot(build_reader()), "fuzz")
    assert isinstance(run("promote v0.10.0 to stage", ctx), tuple)
    assert isinstance(run("promote v0.10.0 to nowhere", ctx), CommandError)
    assert isinstance(run("status", dataclasses.replace(ctx)), Message)
