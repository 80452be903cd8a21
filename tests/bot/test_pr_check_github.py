"""Every GitHub PR touching the fleet gets its check as one comment kept up to date and a
`fluxbot/checks` status (#18), through the real PyGithub client against the GitHub stand-in."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from bot.checkrunner import CheckRunner
from bot.prcheck import STATUS_CONTEXT, PrChecks
from commands.planreport import MARKER
from tests.conftest import git, shared_file, tool
from tests.standins.github import COMMENT_BODY_LIMIT


@pytest.fixture(autouse=True)
def _kubectl() -> None:
    tool("kubectl", "the check renders with `kubectl kustomize`")


class HandMade:
    """A developer's clone of the stand-in's repository, pushing branches and opening PRs by hand."""

    def __init__(self, standin, tmp_path: Path) -> None:
        self.standin = standin
        self.clone = tmp_path / "dev"
        git(tmp_path, "clone", "-q", str(standin.bare_repo), str(self.clone))
        self.event = json.loads(shared_file("fixtures/payloads/github/pull_request.synchronize.json").read_text())

    def push(self, branch: str, path: str, old: str, new: str) -> str:
        git(self.clone, "checkout", "-q", "-B", branch, f"origin/{branch}" if self._exists(branch) else "origin/main")
        file = self.clone / path
        text = file.read_text()
        assert old in text, (path, old)
        file.write_text(text.replace(old, new, 1))
        git(self.clone, "-c", "user.email=dev@example.com", "-c", "user.name=dev", "commit", "-qam", f"edit {path}")
        git(self.clone, "push", "-q", "origin", branch)
        return git(self.clone, "rev-parse", "HEAD")

    def _exists(self, branch: str) -> bool:
        return branch in self.standin.branches()

    def open(self, branch: str) -> int:
        status, pull, _ = self.standin._create_pull({"head": branch, "base": "main", "title": f"hand-made {branch}"})
        assert status == 201
        return pull["number"]

    def payload(self, number: int, action: str) -> dict:
        event = copy.deepcopy(self.event)
        pull = self.standin.pulls[number]
        pull["base"]["sha"] = git(self.clone, "rev-parse", "origin/main")
        event.update(action=action, number=number, pull_request=copy.deepcopy(pull))
        return event


@pytest.fixture
def checks(github_standin, github_bot, tmp_path: Path):
    bot = github_bot()
    runner = CheckRunner()
    yield PrChecks(bot.workspace, bot.forge, runner), HandMade(github_standin, tmp_path), github_standin
    runner.close()


def _statuses(standin, sha: str) -> list[tuple[str, str]]:
    return [(s["state"], s["description"]) for s in standin.statuses.get(sha, []) if s["context"] == STATUS_CONTEXT]


def test_a_hand_made_pr_gets_the_check_and_a_second_push_updates_the_same_comment(checks) -> None:
    prs, dev, standin = checks
    first = dev.push("nginx-lb", "infrastructure/nginx/release.yaml", 'type: "NodePort"', 'type: "LoadBalancer"')
    number = dev.open("nginx-lb")
    prs.on_event("pull_request", dev.payload(number, "opened")).result(120)
    [comment] = standin.comments[number]
    assert comment.startswith(MARKER)
    assert "| test | 🟡 0 added, 0 removed, 1 changed | tracks branch main |" in comment
    assert "| demo | ⏭️ ships with the next release |" in comment
    assert "+        type: LoadBalancer" in comment
    assert _statuses(standin, first) == [("pending", "rendering the affected clusters"),
                                         ("success", "fluxbot check passed: changes test")]

    second = dev.push("nginx-lb", "infrastructure/nginx/release.yaml", 'type: "LoadBalancer"', 'type: "ClusterIP"')
    standin.push_commit(number, second)
    prs.on_event("pull_request", dev.payload(number, "synchronize")).result(120)
    [updated] = standin.comments[number]  # the same comment, edited in place
    assert "+        type: ClusterIP" in updated and "LoadBalancer" not in updated
    assert _statuses(standin, second)[-1] == ("success", "fluxbot check passed: changes test")


def test_the_prs_slack_thread_gets_the_summary_per_cluster_with_a_link(checks) -> None:
    prs, dev, standin = checks
    posted: list[tuple[int, str, object]] = []
    prs.notify = lambda number, key, message: posted.append((number, key, message))
    head = dev.push("nginx-lb", "infrastructure/nginx/release.yaml", 'type: "NodePort"', 'type: "LoadBalancer"')
    number = dev.open("nginx-lb")
    prs.on_event("pull_request", dev.payload(number, "opened")).result(120)
    [(to, key, message)] = posted
    assert (to, key) == (number, f"check-{head}")  # once per pushed commit, however often it is delivered
    assert message.title == f"PR #{number} at {head[:12]}: fluxbot check passed: changes test"
    assert message.lines == ("demo: ships with the next release", "test: 0 added, 0 removed, 1 changed")
    assert message.links[0].url.endswith(f"/pull/{number}")


def test_an_undefined_variable_fails_the_status(checks) -> None:
    prs, dev, standin = checks
    head = dev.push("region", "infrastructure/kustomization.yaml", '          meta_network_zone: "${meta_network_zone}"\n',
                    '          meta_network_zone: "${meta_network_zone}"\n          meta_region: "${meta_region}"\n')
    number = dev.open("region")
    prs.on_event("pull_request", dev.payload(number, "opened")).result(120)
    assert _statuses(standin, head)[-1] == ("failure", "fluxbot check failed for test")
    assert "`${meta_region}`" in standin.comments[number][0]


def test_a_pr_outside_the_fleet_gets_a_passing_status_and_no_comment(checks) -> None:
    prs, dev, standin = checks
    head = dev.push("docs", "README.md", "#", "# ")
    number = dev.open("docs")
    prs.on_event("pull_request", dev.payload(number, "opened")).result(120)
    assert number not in standin.comments
    assert _statuses(standin, head)[-1][0] == "success"
    assert prs.on_event("pull_request", dev.payload(number, "labeled")) is None
    assert prs.on_event("issues", dev.payload(number, "opened")) is None


def test_a_huge_diff_stays_within_githubs_comment_limit(checks) -> None:
    prs, dev, standin = checks
    big = "\n".join(f"        label{i}: {'x' * 200}" for i in range(400))
    head = dev.push("huge", "infrastructure/nginx/release.yaml", '        type: "NodePort"\n',
                    '        type: "NodePort"\n      podLabels:\n' + big.replace("        ", "        ") + "\n")
    number = dev.open("huge")
    prs.on_event("pull_request", dev.payload(number, "opened")).result(120)
    [comment] = standin.comments[number]  # the stand-in refuses bodies over the limit, as GitHub does
    assert len(comment) <= COMMENT_BODY_LIMIT and "Diff truncated" in comment
    assert _statuses(standin, head)[-1][0] == "success"


def test_the_webhook_hands_each_event_to_the_check_and_the_gate_even_if_one_fails(caplog) -> None:
    from bot.prcheck import fan_out

    seen: list[str] = []

    def broken(event: str, payload: dict) -> None:
        raise RuntimeError("check exploded")

    with pytest.raises(RuntimeError):  # and the delivery counts as failed, so a redelivery runs it (#14)
        fan_out(broken, lambda event, payload: seen.append(event))("pull_request", {})
    assert seen == ["pull_request"] and "check exploded" in caplog.text


def test_fluxbots_own_pr_gets_the_comment_instead_of_the_checklist_in_its_body(checks, github_bot) -> None:
    from tests.conftest import say

    prs, dev, standin = checks
    bot = github_bot()
    assert "Opened: PR #1" in say(bot, "promote v0.4.0 to demo")
    assert "### Checks before this PR" in standin.pulls[1]["body"]  # no PR comment wired: the body carries it
    assert "Closed PR #1" in say(bot, "pr close 1")
    bot.checks_in_comment = True  # what `fluxbot serve` sets when it wires the PR check
    assert "Opened: PR #2" in say(bot, "rollback demo")
    assert "### Checks before this PR" not in standin.pulls[2]["body"]
    prs.on_event("pull_request", dev.payload(2, "opened")).result(120)
    [comment] = standin.comments[2]
    assert comment.startswith(MARKER) and "| demo | 🟡" in comment
