"""Following Flux after a merge, against the Kubernetes stand-in running a simulated Flux, with the
real `kubernetes` client. Each scenario is one a real cluster produces (see the stand-in's docstring
for the controller sources each behaviour follows)."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest

from bot.kube import flux
from bot.kube.client import ClusterConnection, FluxCluster, RetryPolicy
from bot.kube.follower import ReconcileFollower
from bot.kube.informers import Informers
from bot.render import to_text
from commands.model import PullRequest
from commands.permissions import Policy, Rule
from tests.conftest import branches, git

POLICY = Policy(rules=(Rule(actions=("*",), users=("U_ALICE",)),))
KS, GIT, HR = flux.KUSTOMIZATIONS, flux.GITREPOSITORIES, flux.HELMRELEASES
FAST = RetryPolicy(attempts=6, initial=0.05, longest=0.3)


def commit_of(repo: Path, ref: str) -> str:
    return git(repo, "rev-parse", ref + "^{commit}")


def revision(repo: Path, tag: str) -> str:
    return flux.revision(tag, commit_of(repo, tag))


def connect(kube, tmp_path: Path, name: str = "demo") -> FluxCluster:
    kubeconfig = kube.kubeconfig(tmp_path / f"kubeconfig-{name}")
    return FluxCluster(name, ClusterConnection(kubeconfig=str(kubeconfig), context="standin"), retry=FAST)


def boot(kube, repo: Path) -> None:
    """demo runs v0.4.0 through flux-demo's chain; every release tag of the repo is on the remote."""
    for tag in ("v0.1.0", "v0.2.0", "v0.3.0"):
        kube.flux.release(tag, commit_of(repo, tag))
    # flux-system polls main every hour here (1m in flux-demo): only fluxbot's request makes it quick
    kube.flux.bootstrap("demo", commit_of(repo, "HEAD"), "v0.4.0", commit_of(repo, "v0.4.0"), owner_interval="1h")


class Flow:
    """Slack app + local forge + follower for cluster `demo` on the simulated cluster."""

    def __init__(self, slack_app, slack_standin, kube, example_repo: Path, tmp_path: Path, timeout: float = 30,
                 store_url: str = "") -> None:
        self.harness = slack_app(POLICY, store_url=store_url)
        self.bot = self.harness.transport.bot
        self.standin, self.kube, self.repo = slack_standin, kube, example_repo
        self.bot.clusters = {"demo": connect(kube, tmp_path)}
        self.informers = self.bot.informers = Informers(self.bot.clusters, watch_timeout=2, backoff=0.05, longest=0.3)
        self.follower = ReconcileFollower(self.bot, self.bot.store, self.bot.clusters, self.harness.transport,
                                          timeout=timeout, informers=self.informers, tick=0.05)
        self.bot.merge_hooks.append(self.push)  # the cluster's git remote has the merge first
        self.bot.merge_hooks.append(self.follower.on_merged)
        self.prs = 0

    def push(self, pr: PullRequest) -> None:
        text = git(self.repo, "show", f"{pr.merge_commit}:clusters/demo/infrastructure.yaml")
        tag = next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.strip().startswith("tag:"))
        self.kube.flux.push_main(pr.merge_commit, tag)

    def texts(self) -> list[str]:
        return [p["text"] for p in self.standin.posts()]

    def run(self, command: str) -> str:
        """A command that opens a PR, then `pr merge`; the PR's thread ts."""
        self.prs += 1
        number = self.prs
        self.harness.command(command)
        self.standin.wait_for(lambda: [t for t in self.texts() if f"Opened: PR #{number}" in t])
        self.harness.command(f"pr merge {number}")
        self.standin.wait_for(lambda: [t for t in self.texts() if f"Merged PR #{number}" in t])
        return self.bot.store.thread_for("local", number)["thread_ts"]

    def thread(self, ts: str) -> list[str]:
        return [p["text"] for p in self.standin.posts() if p.get("thread_ts") == ts]

    def posts(self, ts: str, text: str) -> list[dict]:
        return [p for p in self.standin.posts() if p.get("thread_ts") == ts and text in p["text"]]

    def buttons(self, ts: str) -> list[dict]:
        return [e for p in self.standin.posts() if p.get("thread_ts") == ts
                for b in p.get("blocks") or [] if b["type"] == "actions" for e in b["elements"]]

    def wait_thread(self, ts: str, text: str, timeout: float = 20) -> str:
        return self.standin.wait_for(lambda: next((t for t in self.thread(ts) if text in t), None), timeout)


@pytest.fixture
def flow(slack_app, slack_standin, kube, example_repo, tmp_path):
    boot(kube, example_repo)
    flow = Flow(slack_app, slack_standin, kube, example_repo, tmp_path)
    yield flow
    flow.follower.stop()
    flow.informers.stop()


def test_merge_is_applied_through_the_whole_chain(flow) -> None:
    from bot.metrics import REGISTRY

    def applied() -> float:
        return REGISTRY.get_sample_value("fluxbot_reconcile_duration_seconds_count", {"outcome": "applied"}) or 0.0

    before = applied()
    ts = flow.run("rollback demo")
    success = flow.wait_thread(ts, "demo runs v0.3.0")
    assert f"Flux applied `{revision(flow.repo, 'v0.3.0')}`" in success
    # fluxbot asked the objects that carry the merge, source first: the owner's GitRepository (then
    # its Kustomization, unless the new artifact got it going first); re-fetching the infrastructure
    # GitRepository's old tag would be useless.
    asked = [(p, n) for p, n, _ in flow.kube.patches]
    assert asked[0] == (GIT, "flux-system") and set(asked) <= {(GIT, "flux-system"), (KS, "flux-system")}
    assert all(flux.REQUESTED_AT in patch["metadata"]["annotations"] for _, _, patch in flow.kube.patches)
    assert flow.kube.flux.applied(revision(flow.repo, "v0.3.0"))
    flow.follower.wait()
    assert len(flow.posts(ts, "runs v0.3.0")) == 1 and flow.bot.store.open_follows() == []
    assert applied() == before + 1  # the reconcile's duration is observed once


def test_a_stale_failure_from_before_the_change_is_not_this_changes_failure(flow) -> None:
    # external-secrets-operator fails on v0.4.0 (before the change) ...
    flow.kube.flux.fail(KS, "external-secrets-operator", flux.BUILD_FAILED, "kustomize build failed: old", times=99,
                        revision=revision(flow.repo, "v0.4.0"))
    flow.kube.patch(KS, "flux-system", "external-secrets-operator",
                    {"metadata": {"annotations": {flux.REQUESTED_AT: "before"}}})
    flow.kube.flux.wait_until(lambda: flux.ready(flow.kube.get(KS, "external-secrets-operator"))[0] == "False")
    # ... and stays failed until the controller gets to the new revision
    flow.kube.flux.hold(KS, "external-secrets-operator")
    ts = flow.run("rollback demo")
    new = revision(flow.repo, "v0.3.0")
    flow.kube.flux.wait_until(lambda: flow.kube.get(GIT, "infrastructure")["status"]["artifact"]["revision"] == new)
    threading.Event().wait(0.5)  # time in which a follower that took the old failure for this one would say so
    flow.kube.flux.hold(KS, "external-secrets-operator", held=False)
    flow.wait_thread(ts, "demo runs v0.3.0")
    assert not flow.posts(ts, "failed")


def test_temporary_source_not_ready_and_retried_upgrades_are_progress(flow) -> None:
    # helm-controller: the chart is not ready yet (SourceNotReady), then the upgrade fails twice and
    # succeeds on the third attempt, within upgrade.remediation.retries
    flow.kube.flux.release("v0.3.0", commit_of(flow.repo, "v0.3.0"), retries=3)
    flow.kube.flux.helm_fails("ingress-nginx", "ingress-nginx", 2, "HelmChart 'ingress-nginx/ingress-nginx' is not ready",
                              reason=flux.SOURCE_NOT_READY)
    flow.kube.flux.helm_fails("ingress-nginx", "ingress-nginx", 2, "post-upgrade hooks failed")
    ts = flow.run("rollback demo")
    flow.wait_thread(ts, "demo runs v0.3.0")
    history = flow.kube.get(HR, "ingress-nginx", "ingress-nginx")["status"]["history"]
    # it really failed twice, each time remediated by a rollback to the previous release
    assert [h["status"] for h in history[:5]] == ["deployed", "superseded", "failed", "superseded", "failed"]
    assert not flow.posts(ts, "Reconcile of demo to v0.3.0 failed") and not flow.buttons(ts)


def test_children_still_at_the_old_revision_are_not_applied(flow) -> None:
    flow.kube.flux.hold(KS, "nginx")
    ts = flow.run("rollback demo")
    new = revision(flow.repo, "v0.3.0")
    # The infrastructure Kustomization applies v0.3.0 and is Ready (nginx looks Current to its health
    # check: its spec did not change), but nginx itself is still at v0.4.0.
    flow.kube.flux.wait_until(lambda: flow.kube.get(KS, "infrastructure")["status"].get("lastAppliedRevision") == new)
    threading.Event().wait(0.5)
    assert not flow.posts(ts, "runs v0.3.0")
    flow.kube.flux.hold(KS, "nginx", held=False)
    flow.wait_thread(ts, "demo runs v0.3.0")


def test_a_failure_then_recovery_is_reported_in_the_same_thread(flow) -> None:
    flow.kube.flux.fail(KS, "nginx", flux.BUILD_FAILED, "kustomize build failed: accumulating resources", times=1,
                        stalled=True, revision=revision(flow.repo, "v0.3.0"))
    ts = flow.run("rollback demo")
    failure = flow.wait_thread(ts, "Reconcile of demo to v0.3.0 failed")
    assert "BuildFailed in Kustomization flux-system/nginx" in failure and "accumulating resources" in failure
    # someone fixes it (a reconcile request after the fix): Flux succeeds, the thread hears of it
    flow.kube.patch(KS, "flux-system", "nginx", {"metadata": {"annotations": {flux.REQUESTED_AT: "fixed"}}})
    recovered = flow.wait_thread(ts, "demo runs v0.3.0")
    assert "recovered" in recovered


def test_a_suspended_kustomization_is_reported_and_not_annotated(flow) -> None:
    flow.kube.patch(KS, "flux-system", "flux-system", {"spec": {"suspend": True}})
    ts = flow.run("rollback demo")
    message = flow.wait_thread(ts, "Flux will not apply v0.3.0 on demo")
    assert "Kustomization flux-system/flux-system is suspended" in message
    refused = flow.bot.handle("reconcile demo", "U_ALICE")
    assert "is suspended" in to_text(refused[0])
    assert flow.kube.patches == []  # nothing was asked of a suspended chain (`flux reconcile` refuses too)


def test_a_missing_tag_at_the_source_is_reported_with_its_cause_at_once(flow) -> None:
    del flow.kube.flux.remote.tags["v0.3.0"]  # the tag never reached the cluster's remote
    ts = flow.run("rollback demo")
    failure = flow.wait_thread(ts, "Flux cannot fetch v0.3.0 for demo")
    assert "GitOperationFailed" in failure and "couldn't find remote ref" in failure and "refs/tags/v0.3.0" in failure
    assert not flow.posts(ts, "has not applied")  # long before the deadline
    # the tag is pushed: source-controller fetches it at its interval, the follow reports the recovery
    flow.kube.flux.remote.tags["v0.3.0"] = commit_of(flow.repo, "v0.3.0")
    assert "recovered" in flow.wait_thread(ts, "demo runs v0.3.0")


def test_a_410_during_the_follow_relists_and_applies_what_it_listed(flow) -> None:
    flow.kube.flux.hold(GIT, "flux-system")
    ts = flow.run("rollback demo")
    flow.standin.wait_for(lambda: (GIT, "flux-system") in [(p, n) for p, n, _ in flow.kube.patches])
    # the watches drop and cannot come back while Flux applies everything ...
    flow.kube.fail(503, times=10**6, watch=True)
    flow.kube.disconnect_watches()
    flow.kube.flux.hold(GIT, "flux-system", held=False)
    flow.kube.flux.wait_until(lambda: flow.kube.flux.applied(revision(flow.repo, "v0.3.0")))
    # ... then etcd compacts: resuming from the old resourceVersion answers 410 Gone
    flow.kube.compact()
    flow.kube.faults.clear()
    flow.wait_thread(ts, "demo runs v0.3.0")
    assert sum(i.relists for i in flow.informers.of("demo").informers.values()) >= 1


def test_503_and_429_during_the_follow_are_retried(flow) -> None:
    flow.kube.fail(503, times=2, method="PATCH")
    flow.kube.fail(429, times=1, method="PATCH")
    flow.kube.fail(503, times=3, watch=True)
    ts = flow.run("rollback demo")
    flow.wait_thread(ts, "demo runs v0.3.0")
    assert not flow.posts(ts, "Cannot follow") and not flow.posts(ts, "Could not ask")


def test_two_quick_merges_supersede_the_first_follow(flow) -> None:
    flow.kube.flux.hold(GIT, "flux-system")
    first = flow.run("rollback demo")
    second = flow.run("promote v0.4.0 to demo")
    flow.wait_thread(first, "No longer following v0.3.0 on demo")
    flow.kube.flux.hold(GIT, "flux-system", held=False)
    flow.wait_thread(second, "demo runs v0.4.0")
    flow.follower.wait()
    assert not flow.posts(first, "has not applied") and not flow.posts(first, "runs v0.3.0")


def test_a_pre_release_tag_is_followed(slack_app, slack_standin, kube, example_repo, tmp_path) -> None:
    git(example_repo, "tag", "-a", "v0.3.1-rc.1", "-m", "infrastructure v0.3.1-rc.1", commit_of(example_repo, "v0.3.0"))
    kube.flux.release("v0.3.1-rc.1", commit_of(example_repo, "v0.3.0"))
    boot(kube, example_repo)
    flow = Flow(slack_app, slack_standin, kube, example_repo, tmp_path)
    ts = flow.run("rollback demo to v0.3.1-rc.1")
    assert f"`{revision(example_repo, 'v0.3.1-rc.1')}`" in flow.wait_thread(ts, "demo runs v0.3.1-rc.1")
    flow.informers.stop()


def test_the_roll_back_button_after_a_failed_rollback_goes_further_back(flow) -> None:
    flow.kube.flux.helm_fails("ingress-nginx", "ingress-nginx", 1, "context deadline exceeded")
    ts = flow.run("rollback demo")  # v0.4.0 -> v0.3.0, whose nginx upgrade fails: RetriesExceeded
    (failure,) = flow.standin.wait_for(lambda: flow.posts(ts, "Reconcile of demo to v0.3.0 failed"))
    assert "UpgradeFailed in HelmRelease ingress-nginx/ingress-nginx" in failure["text"]
    (button,) = flow.buttons(ts)
    # from/to fixed now; never forward to v0.4.0, the release just backed out of (Flux still runs it)
    assert (button["action_id"], button["value"]) == ("fluxbot_rollback", "demo from v0.3.0 to v0.2.0")
    flow.harness.click("fluxbot_rollback", button["value"], "U_ALICE")
    flow.standin.wait_for(lambda: [t for t in flow.texts() if "Opened: PR #2 Roll back demo to v0.2.0" in t])
    assert branches(flow.repo) == ["fluxbot/rollback-demo-v0.2.0"]


def test_timeout_is_a_warning(slack_app, slack_standin, kube, example_repo, tmp_path) -> None:
    boot(kube, example_repo)
    flow = Flow(slack_app, slack_standin, kube, example_repo, tmp_path, timeout=1)
    kube.flux.hold(GIT, "infrastructure")
    ts = flow.run("rollback demo")
    assert "still GitRepository flux-system/infrastructure" in flow.wait_thread(ts, "has not applied v0.3.0 yet")
    flow.informers.stop()


def test_an_unreachable_cluster_is_a_message(slack_app, slack_standin, kube, example_repo, tmp_path) -> None:
    flow = Flow(slack_app, slack_standin, kube, example_repo, tmp_path)
    flow.bot.merge_hooks.remove(flow.push)
    flow.kube.stop()
    ts = flow.run("rollback demo")
    assert "unreachable" in flow.wait_thread(ts, "Cannot follow the reconcile of demo")


def test_a_restart_in_the_middle_of_a_follow(flow) -> None:
    flow.kube.flux.hold(GIT, "infrastructure")
    ts = flow.run("rollback demo")
    flow.kube.flux.wait_until(lambda: flow.kube.get(GIT, "infrastructure")["spec"]["ref"]["tag"] == "v0.3.0")
    flow.standin.wait_for(lambda: flow.bot.store.open_follows()[0]["requested"] == 2)
    asked = len(flow.kube.patches)
    flow.follower.stop()  # the process stops without having posted
    assert len(flow.bot.store.open_follows()) == 1
    restarted = ReconcileFollower(flow.bot, flow.bot.store, flow.bot.clusters, flow.harness.transport, timeout=30,
                                  informers=flow.informers, tick=0.05)
    restarted.resume()
    flow.kube.flux.hold(GIT, "infrastructure", held=False)
    flow.wait_thread(ts, "demo runs v0.3.0")
    restarted.wait()
    assert len(flow.kube.patches) == asked  # the reconcile was requested once, not again
    assert len(flow.posts(ts, "demo runs v0.3.0")) == 1


def test_reconcile_command_walks_the_chain_and_status_shows_only_it(example_repo: Path, make_bot, kube, tmp_path) -> None:
    boot(kube, example_repo)
    bot = make_bot(example_repo)
    bot.clusters = {"demo": connect(kube, tmp_path)}
    out = "\n".join(to_text(m) for m in bot.handle("reconcile demo", "alice"))
    assert "Asked Flux on demo to reconcile" in out
    assert [(p, n) for p, n, _ in kube.patches] == [(GIT, "flux-system"), (KS, "flux-system"),
                                                     (GIT, "infrastructure"), (KS, "infrastructure")]
    assert "Kustomization flux-system/infrastructure: reconciled, Ready=True" in out
    # an object outside the chain fails: not the infrastructure's business
    kube.apply(KS, {"metadata": {"name": "unrelated-ks", "namespace": "flux-system"},
                    "spec": {"interval": "5m", "path": "./apps", "sourceRef": {"kind": "GitRepository", "name": "gone"}}})
    kube.flux.fail(KS, "nginx", flux.BUILD_FAILED, "kustomize build failed: x", times=1, stalled=True)
    kube.patch(KS, "flux-system", "nginx", {"metadata": {"annotations": {flux.REQUESTED_AT: "now"}}})
    kube.flux.wait_until(lambda: flux.is_true(kube.get(KS, "nginx"), flux.STALLED))
    kube.flux.wait_until(lambda: flux.ready(kube.get(KS, "unrelated-ks"))[0] == "False")
    cached = lambda name: bot.kube().of("demo").snapshot().get(KS, "flux-system", name)  # noqa: E731
    kube.flux.wait_until(lambda: flux.is_true(cached("nginx"), flux.STALLED) and cached("unrelated-ks") is not None)
    status = "\n".join(to_text(m) for m in bot.handle("status demo", "alice"))
    assert f"Applied:        {revision(example_repo, 'v0.4.0')}" in status
    assert "not ready: Kustomization flux-system/nginx: BuildFailed kustomize build failed: x" in status
    assert "unrelated-ks" not in status
    assert "no connection to cluster `prod-eu`" in "\n".join(to_text(m) for m in bot.handle("reconcile prod-eu", "alice"))
    (tmp_path / "dead").write_text((tmp_path / "kubeconfig-demo").read_text().replace(kube.url, "http://127.0.0.1:9"))
    first = bot.kube()
    bot.clusters = {"demo": FluxCluster("demo", ClusterConnection(kubeconfig=str(tmp_path / "dead"), context="standin"),
                                        retry=FAST)}
    try:
        assert "Live:           unavailable: cluster `demo` is unreachable" in "\n".join(
            to_text(m) for m in bot.handle("status demo", "alice"))
    finally:
        bot.kube().stop()
        first.stop()


def test_release_waits_for_the_test_cluster_to_apply_main(example_repo: Path, make_bot, kube, tmp_path) -> None:
    # the test cluster tracks main; Flux runs an older main there, Ready everywhere
    kube.flux.bootstrap("test", commit_of(example_repo, "v0.4.0"))
    bot = make_bot(example_repo)
    bot.clusters = {"test": connect(kube, tmp_path, "test")}
    bot.release_requires_green = "test"
    head = commit_of(example_repo, "HEAD")
    refused = "\n".join(to_text(m) for m in bot.handle("release v0.5.0", "alice"))
    assert f"`test` has not applied `main@sha1:{head}`" in refused and branches(example_repo) == []
    # main's head reaches the cluster but nginx fails on it
    kube.flux.fail(KS, "nginx", flux.BUILD_FAILED, "kustomize build failed: boom", times=1, stalled=True)
    kube.flux.push_main(head)
    kube.flux.wait_until(lambda: flux.is_true(kube.get(KS, "nginx"), flux.STALLED))
    refused = "\n".join(to_text(m) for m in bot.handle("release v0.5.0", "alice"))
    assert "`test` has not applied" in refused and branches(example_repo) == []
    kube.patch(KS, "flux-system", "nginx", {"metadata": {"annotations": {flux.REQUESTED_AT: "fixed"}}})
    kube.flux.wait_until(lambda: kube.flux.applied(f"main@sha1:{head}"))
    assert "Opened: PR #1 Release v0.5.0" in "\n".join(to_text(m) for m in bot.handle("release v0.5.0", "alice"))
    bot.kube().stop()


def test_fifty_clusters_followed_at_once_use_bounded_threads(example_repo: Path, make_bot, kube, tmp_path) -> None:
    boot(kube, example_repo)
    bot = make_bot(example_repo)
    names = [f"c{i:02}" for i in range(50)]
    bot.clusters = {name: connect(kube, tmp_path, name) for name in names}
    informers = Informers(bot.clusters, watch_timeout=1)  # stopped threads end within a second

    class Quiet:
        def post(self, *args, **kwargs) -> None:
            pass

    before = set(threading.enumerate())  # the threads themselves: idents of finished threads are reused
    follower = ReconcileFollower(bot, bot.store, bot.clusters, Quiet(), timeout=60, informers=informers, tick=0.05)
    expected = revision(example_repo, "v0.3.0")  # never applied: the follows stay open
    for name in names:
        bot.store.add_follow(name, expected, "v0.3.0", "infrastructure", "infrastructure", "C", "1.1", 0.0)
    follower.clock = lambda: 1.0
    follower.resume()
    kube.flux.wait_until(lambda: kube.open_watches >= 3 * len(names), timeout=60)
    # the stand-in's server threads are not ours
    ours = [t for t in threading.enumerate() if t not in before and "process_request" not in t.name]
    try:
        # one informer per cluster and kind, one dispatcher, a small request pool; not a thread per
        # follow and kind
        assert len(ours) <= 3 * len(names) + 1 + 4
        assert len([t for t in ours if t.name.startswith("informer-")]) == 3 * len(names)
        cluster_wide = [q for _, q in kube.list_requests(HR)]
        assert len(cluster_wide) == len(names)
        assert all(q.get("labelSelector") == [flux.OWNER_NAME_LABEL] for q in cluster_wide)
    finally:
        follower.stop()
        informers.stop()


def test_check_config_online_checks_the_access_fluxbot_needs(example_repo: Path, kube, tmp_path, slack_standin) -> None:
    import os
    import subprocess
    import sys

    boot(kube, example_repo)
    kubeconfig = kube.kubeconfig(tmp_path / "kubeconfig")
    config = tmp_path / "fluxbot.yaml"
    config.write_text(f"repo: {example_repo}\nstate_dir: {tmp_path / 'state'}\npermissions:\n  rules:\n"
                      "    - actions: [promote]\n      users: [U1]\n"
                      f"clusters:\n  demo:\n    kubeconfig: {kubeconfig}\n    context: standin\n")

    def check() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "bot.cli", "check-config", "--config", str(config), "--online"],
                              capture_output=True, text=True, timeout=120,
                              env={**os.environ, "SLACK_BOT_TOKEN": "xoxb-test", "SLACK_APP_TOKEN": "",
                                   "SLACK_SIGNING_SECRET": "8f742231b10e8888abcd99edc7f285a5",
                                   "FLUXBOT_SLACK_API_URL": slack_standin.api_url})

    run = check()
    assert run.returncode == 0, run.stdout + run.stderr
    assert "✓ cluster demo access" in run.stdout and "patch flux-system, infrastructure" in run.stdout
    kube.denied |= {("patch", KS, "infrastructure"), ("watch", HR)}  # RBAC with resourceNames: one object only
    run = check()
    assert run.returncode == 1
    assert "may not watch helmreleases, patch kustomizations (infrastructure)" in run.stdout


@pytest.mark.parametrize("helm", [("v2beta2",), ()], ids=["helmrelease-v2beta2", "no-helm-controller"])
def test_api_versions_are_discovered(helm, slack_app, slack_standin, example_repo, tmp_path) -> None:
    from tests.standins.kubernetes import KubernetesStandIn

    kube = KubernetesStandIn(helm_versions=helm)
    try:
        boot(kube, example_repo)
        flow = Flow(slack_app, slack_standin, kube, example_repo, tmp_path)
        ts = flow.run("rollback demo")
        flow.wait_thread(ts, "demo runs v0.3.0")
        served = flow.informers.of("demo").informers
        assert (HR in served) == bool(helm)
        flow.informers.stop()
    finally:
        kube.stop()


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)  # replicas share PostgreSQL
def test_a_leader_dying_mid_follow_is_replaced_and_the_thread_gets_one_verdict(
        slack_app, slack_standin, kube, example_repo, tmp_path, store_url) -> None:
    import time

    from bot.leader import Leadership
    from bot.store import Store

    boot(kube, example_repo)
    flow = Flow(slack_app, slack_standin, kube, example_repo, tmp_path, store_url=store_url)  # replica A
    first = Leadership(flow.bot.store, flow.follower.resume, flow.follower.pause, ttl=1.0, holder="replica-a").start()
    flow.follower.leading = lambda: first.held
    flow.kube.flux.hold(GIT, "infrastructure")  # Flux is slow: the follow is still open when A dies
    ts = flow.run("rollback demo")
    flow.standin.wait_for(lambda: flow.bot.store.open_follows() and flow.bot.store.open_follows()[0]["requested"] == 2)
    first._stop.set()  # A dies: no more renewals, no resignation, its follower gone
    flow.follower.stop()
    flow.informers.stop()

    store = Store(store_url)  # replica B: its own connections, informers and follower; the same Slack
    informers = Informers({"demo": connect(kube, tmp_path, "demo")}, watch_timeout=2, backoff=0.05, longest=0.3)
    follower = ReconcileFollower(flow.bot, store, informers.clusters, flow.harness.transport, timeout=30,
                                 informers=informers, tick=0.05)
    second = Leadership(store, follower.resume, follower.pause, ttl=1.0, holder="replica-b")
    follower.leading = lambda: second.held
    try:
        second.start()
        flow.standin.wait_for(lambda: second.renew() or second.held, timeout=10)  # once A's lease ran out
        assert second.token > first.token
        flow.kube.flux.hold(GIT, "infrastructure", held=False)
        flow.wait_thread(ts, "demo runs v0.3.0")
        follower.wait()
        time.sleep(0.5)
        assert len(flow.posts(ts, "demo runs v0.3.0")) == 1  # one verdict
    finally:
        second.stop()
        follower.stop()
        informers.stop()
        store.close()
