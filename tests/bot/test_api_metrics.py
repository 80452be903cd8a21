"""#17's metrics an operator needs: errors of the Slack, GitHub and Kubernetes APIs, GitHub's rate
limit, and renders (duration, cache). Each read through `/metrics`' registry after a real failure."""
from __future__ import annotations

from pathlib import Path

import pytest

from bot.metrics import REGISTRY
from commands.permissions import Policy, Rule
from tests.conftest import say

POLICY = Policy(rules=(Rule(actions=("*",), users=("U_ALICE",)),))


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_slack_error_is_counted_by_its_code(slack_app, slack_standin) -> None:
    harness = slack_app(POLICY)
    before = sample("fluxbot_api_errors_total", api="slack", reason="not_in_channel")
    slack_standin.fail("chat.postMessage", "not_in_channel")
    harness.command("versions")
    slack_standin.wait_for(lambda: [c for c in slack_standin.calls if c.method.startswith("response/")])
    assert sample("fluxbot_api_errors_total", api="slack", reason="not_in_channel") - before == 1


def test_github_errors_are_counted_and_the_rate_limit_is_what_github_said(github_bot, github_standin) -> None:
    from bot.metrics import RateLimitCollector

    bot = github_bot()
    collector = RateLimitCollector(bot.forge.rate_limit)
    say(bot, "promote v0.4.0 to demo")
    remaining, limit = bot.forge.rate_limit()
    assert limit == github_standin.rate_limit == 5000
    assert remaining == github_standin.rate_limit - github_standin.rate_limit_used  # the last answer's header
    families = {f.name: f.samples[0].value for f in collector.collect()}
    assert families == {"fluxbot_github_rate_limit_remaining": remaining, "fluxbot_github_rate_limit": 5000}

    before = sample("fluxbot_api_errors_total", api="github", reason="404")
    github_standin.fail("PUT", r"/pulls/\d+/merge$", 404, "Not Found")
    assert "404" in say(bot, "pr merge 1")
    assert sample("fluxbot_api_errors_total", api="github", reason="404") - before == 1


def test_kubernetes_errors_are_counted_but_an_expired_watch_is_routine(kube, example_repo: Path, tmp_path: Path) -> None:
    from bot.kube import flux
    from bot.kube.client import ClusterError
    from tests.bot.test_reconcile import boot, connect

    boot(kube, example_repo)
    cluster = connect(kube, tmp_path)
    try:
        before = sample("fluxbot_api_errors_total", api="kubernetes", reason="403")
        kube.fail(403, times=1, method="GET")
        with pytest.raises(ClusterError):
            cluster.get(flux.KUSTOMIZATIONS, "infrastructure")
        assert sample("fluxbot_api_errors_total", api="kubernetes", reason="403") - before == 1
        assert sample("fluxbot_api_errors_total", api="kubernetes", reason="410") == 0
    finally:
        cluster.close()


def test_renders_are_timed_and_counted_by_how_they_were_answered(example_repo: Path, make_bot) -> None:
    def counts() -> tuple[float, ...]:
        return (sample("fluxbot_renders_total", result="rendered"), sample("fluxbot_renders_total", result="cached"),
                sample("fluxbot_render_duration_seconds_count"))

    bot = make_bot(example_repo)
    before = counts()
    assert "Opened: PR #1" in say(bot, "rollback demo")
    first = counts()
    assert first[0] - before[0] >= 1 and first[2] - before[2] == first[0] - before[0]  # each kubectl run timed
    say(bot, "pr close 1")
    assert "Opened: PR #2" in say(bot, "rollback demo")  # the same trees again: from the cache
    second = counts()
    assert second[0] == first[0] and second[1] > first[1]
