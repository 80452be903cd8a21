"""fluxbot benchmarks: `python bench/run.py [--quick] [--json]`.

Builds what it needs in a temp dir and runs everything on loopback: Slack ack latency under load,
promotion time against the bare git floor, a generated big mono-repo, and concurrent promotions
through the HTTP app. Prints one table, or one JSON object with --json. Not part of the tests.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import logging  # noqa: E402

from slack_sdk.signature import SignatureVerifier  # noqa: E402

from bot.cli import build_bot  # noqa: E402
from bot.config import Settings, SlackSettings  # noqa: E402
from bot.example_repo import write_example_repo  # noqa: E402
from bot.server import build_server  # noqa: E402
from bot.slack import SlackTransport  # noqa: E402
from commands.permissions import Policy, Rule  # noqa: E402
from tests.standins.slack import SlackStandIn  # noqa: E402

SECRET = "bench-signing-secret"
SHARED = ROOT.parent / "shared"
FLUX_DEMO = SHARED / "fixtures" / "flux-demo.bundle"


def git(cwd: Path, *args: str, input: str | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True, input=input).stdout.strip()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


# -- a generated big mono-repo, through git fast-import (seconds, not minutes) ---------------------

def cluster_yaml(name: str, tag: str, pin: str = "tag") -> str:
    return (f"apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata:\n  name: infrastructure\n"
            f"  namespace: flux-system\nspec:\n  interval: 1m\n  url: https://git.example.com/fleet.git\n  ref:\n"
            f"    {pin}: {tag}\n---\napiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n"
            f"  name: infrastructure\n  namespace: flux-system\nspec:\n  interval: 5m\n  sourceRef:\n"
            f"    kind: GitRepository\n    name: infrastructure\n  path: ./infrastructure/\n  prune: true\n"
            f"  postBuild:\n    substitute:\n      meta_cluster_name: \"{name}\"\n      meta_productive: \"false\"\n")


def release_yaml(name: str, version: str) -> str:
    return (f"apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata:\n  name: {name}\n  namespace: {name}\n"
            f"spec:\n  interval: 30m\n  chart:\n    spec:\n      chart: {name}\n      version: \"{version}\"\n")


def big_repo(target: Path, clusters: int, components: int, tags: int, commits: int, tracking: int = 0) -> Path:
    """A repo with `clusters` clusters (the last `tracking` of them track main), `components`
    HelmReleases, `tags` releases, `commits` commits."""
    target.mkdir(parents=True)
    git(target, "init", "-q", "-b", "main")
    stream: list[str] = []
    mark = 0

    def blob(text: str) -> int:
        nonlocal mark
        mark += 1
        data = text.encode()
        stream.append(f"blob\nmark :{mark}\ndata {len(data)}\n{text}\n")
        return mark

    tag_every = max(1, commits // tags)
    released = []
    for n in range(commits):
        files: dict[str, int] = {}
        if n == 0:
            for c in range(clusters):
                pin = ("branch", "main") if c >= clusters - tracking else ("tag", "v0.0.1")
                files[f"clusters/c{c:04d}/infrastructure.yaml"] = blob(cluster_yaml(f"c{c:04d}", pin[1], pin[0]))
            for k in range(components):
                files[f"infrastructure/comp{k:02d}/release.yaml"] = blob(release_yaml(f"comp{k:02d}", "1.0.0"))
            files["CHANGELOG.md"] = blob("# Changelog\n\n## [Unreleased]\n")
        else:
            k = n % components
            files[f"infrastructure/comp{k:02d}/release.yaml"] = blob(release_yaml(f"comp{k:02d}", f"1.{n}.0"))
        mark += 1
        commit_mark = mark
        body = "".join(f"M 100644 :{m} {p}\n" for p, m in files.items())
        message = f"change {n}"
        stream.append(f"commit refs/heads/main\nmark :{commit_mark}\ncommitter Bench <b@example.com> {1700000000 + n} +0000\n"
                      f"data {len(message)}\n{message}\n" + ("" if n == 0 else f"from :{commit_mark - len(files) - 1}\n") + body + "\n")
        if n % tag_every == 0 and len(released) < tags:
            version = f"v0.{len(released) // 10}.{len(released) % 10 + 1}" if released else "v0.0.1"
            released.append(version)
            stream.append(f"reset refs/tags/{version}\nfrom :{commit_mark}\n\n")
    subprocess.run(["git", "fast-import", "--quiet"], cwd=target, input="".join(stream).encode(), check=True)
    git(target, "checkout", "-q", "main")
    return target


def commit_change(repo: Path, branch: str, path: str, old: str, new: str) -> str:
    """A branch off main that replaces `old` by `new` in `path` (a hand-made PR)."""
    git(repo, "checkout", "-q", "-B", branch, "main")
    file = repo / path
    file.write_text(file.read_text().replace(old, new, 1))
    git(repo, "-c", "user.email=b@example.com", "-c", "user.name=Bench", "commit", "-qam", f"bench: {path}")
    git(repo, "checkout", "-q", "main")
    return branch


# -- measurements -----------------------------------------------------------------------------

def measure_promote(repo: Path, state: Path, cluster: str, version: str, rounds: int, checks: bool) -> list[float]:
    """Times of `rounds + 1` promotions on one bot; the first renders cold, the rest find the renders cached."""
    bot = build_bot(Settings(repo=str(repo), state_dir=state, policy=Policy(trusted=True)))
    bot.workspace.quality_checks = checks
    bot.handle("status", "bench")  # warm: mirror cloned, snapshot caches filled
    times = []
    for _ in range(rounds + 1):
        start = time.perf_counter()
        replies = bot.handle(f"promote {version} to {cluster}", "bench")
        times.append((time.perf_counter() - start) * 1000)
        assert replies[0].title.startswith("Opened"), replies[0].title
        number = bot.forge.open_prs()[0].number
        bot.handle(f"pr close {number}", "bench")
    return times


def measure_check(repo: Path, state: Path, head: str) -> tuple[float, float, str]:
    """`fluxbot check` as CI runs it (a fresh process): cold (no mirror, no renders), then warm."""
    times = []
    for _ in range(2):
        start = time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "bot.cli", "check", "--repo", str(repo), "--base", "main",
                              "--head", head, "--format", "json", "--state", str(state)],
                             cwd=ROOT, capture_output=True, text=True, timeout=900)
        times.append((time.perf_counter() - start) * 1000)
        if run.returncode != 0:
            raise RuntimeError(f"fluxbot check failed: {run.stderr or run.stdout[-2000:]}")
    summary = json.loads(run.stdout)["summary"]
    return round(times[0], 1), round(times[1], 1), summary


def measure_startup(args: list[str], rounds: int) -> tuple[float, list[str]]:
    """Median wall time of `fluxbot <args>` in a fresh process, and which heavy clients it imported."""
    probe = ("import sys, runpy; sys.argv = ['fluxbot', *sys.argv[1:]]\n"
             "try:\n    runpy.run_module('bot.cli', run_name='__main__')\nexcept SystemExit:\n    pass\n"
             "print('IMPORTED', *[m for m in ('kubernetes', 'github', 'slack_bolt') if m in sys.modules], file=sys.stderr)")
    times, heavy = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        run = subprocess.run([sys.executable, "-c", probe, *args], cwd=ROOT, capture_output=True, text=True,
                             input="", timeout=60)
        times.append((time.perf_counter() - start) * 1000)
        heavy = next((line.split()[1:] for line in run.stderr.splitlines() if line.startswith("IMPORTED")), heavy)
    return round(statistics.median(times), 1), heavy


def measure_git_floor(repo: Path, work: Path, path: str, old: str, new: str, rounds: int) -> list[float]:
    origin = work / "origin.git"
    git(work, "clone", "-q", "--bare", str(repo), str(origin))
    clone = work / "floor"
    git(work, "clone", "-q", "--bare", str(origin), str(clone))
    times = []
    for n in range(rounds):
        start = time.perf_counter()
        tree = work / f"wt{n}"
        git(clone, "fetch", "-q", "origin", "+refs/heads/*:refs/heads/*")
        git(clone, "worktree", "add", "-q", "--detach", str(tree), "main")
        file = tree / path
        file.write_text(file.read_text().replace(f"tag: {old}", f"tag: {new}"))
        git(tree, "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qam", "promote")
        git(tree, "push", "-q", "--force", str(origin), f"HEAD:refs/heads/floor-{n}")
        git(clone, "worktree", "remove", "--force", str(tree))
        times.append((time.perf_counter() - start) * 1000)
    return times


class SlackApp:
    """The real HTTP app for a repo, with a Slack stand-in, for load tests."""

    def __init__(self, repo: Path, state: Path) -> None:
        self.standin = SlackStandIn(token="xoxb-bench").start()
        bot = build_bot(Settings(repo=str(repo), state_dir=state,
                                 policy=Policy(rules=(Rule(actions=("*",), users=("U_BENCH",)),))))
        slack = SlackSettings(bot_token="xoxb-bench", signing_secret=SECRET, api_url=self.standin.api_url)
        self.transport = SlackTransport(bot, bot.store, slack)
        self.server = build_server(self.transport.app, "127.0.0.1", 0, threads=16)
        threading.Thread(target=self.server.run, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.effective_port}/slack/events"
        self.bot = bot
        self._n = 0
        self._lock = threading.Lock()

    def command(self, text: str, trigger: str = "") -> float:
        with self._lock:
            self._n += 1
            n = self._n
        # one channel per request, as from across a workspace: Slack's one post per second and
        # channel (which fluxbot keeps to) would otherwise pace the answers of a load test for minutes
        return slash(self.url, text, trigger or f"t.{n}", f"C_BENCH{n}", self.standin.url)

    def stop(self) -> None:
        self.server.close()
        self.transport.close()  # acked requests still get their answers before Slack goes away
        self.standin.stop()


def measure_reconcile_notify(example: Path, work: Path, rounds: int) -> list[float]:
    """Merge a change and let the simulated Flux carry it through the chain (flux-system, the
    infrastructure GitRepository, Kustomizations, HelmReleases); time from the last controller step
    (the nginx HelmRelease upgrade, held until then) to the message in the Slack thread."""
    from bot.kube import flux
    from bot.kube.client import ClusterConnection, FluxCluster
    from bot.kube.follower import ReconcileFollower
    from bot.kube.informers import Informers
    from tests.standins.kubernetes import KubernetesStandIn

    repo = work / "reconcile-repo"
    git(work, "clone", "-q", "--bare", str(example), str(repo))
    kube = KubernetesStandIn()
    app = SlackApp(repo, work / "s-reconcile")
    informers = None
    try:
        def commit(ref: str) -> str:
            return git(repo, "rev-parse", ref + "^{commit}")

        for tag in ("v0.3.0", "v0.4.0"):
            kube.flux.release(tag, commit(tag))
        kube.flux.bootstrap("demo", commit("HEAD"), "v0.4.0", commit("v0.4.0"), owner_interval="1h")
        bot = app.bot
        bot.clusters = {"demo": FluxCluster("demo", ClusterConnection(
            kubeconfig=str(kube.kubeconfig(work / "kubeconfig")), context="standin"))}
        informers = bot.informers = Informers(bot.clusters)
        follower = ReconcileFollower(bot, bot.store, bot.clusters, app.transport, timeout=60, informers=informers,
                                     tick=0.2)

        def pushed(pr) -> None:  # the cluster's git remote has the merge
            text = git(repo, "show", f"{pr.merge_commit}:clusters/demo/infrastructure.yaml")
            kube.flux.push_main(pr.merge_commit, text.split("tag:", 1)[1].split()[0])

        bot.merge_hooks[:0] = [pushed, follower.on_merged]
        times = []
        for n in range(rounds):
            tag, text = ("v0.3.0", "rollback demo") if n % 2 == 0 else ("v0.4.0", "promote v0.4.0 to demo")
            app.command(text)
            assert wait_until(lambda: bot.forge.open_prs(), 60), f"no PR for {text}"
            kube.flux.hold(flux.HELMRELEASES, "ingress-nginx", "ingress-nginx")
            app.command(f"pr merge {bot.forge.open_prs()[0].number}")
            nginx = lambda: kube.get(flux.KUSTOMIZATIONS, "nginx") or {}  # noqa: E731
            assert wait_until(lambda: nginx().get("status", {}).get("lastAttemptedRevision", "").startswith(tag), 60)
            start = time.perf_counter()
            kube.flux.hold(flux.HELMRELEASES, "ingress-nginx", "ingress-nginx", held=False)
            posted = lambda: [c for c in app.standin.of("chat.postMessage") if f"demo runs {tag}" in c.params.get("text", "")
                              and c.received >= start]
            assert wait_until(posted, 60), f"no success message for {tag}"
            times.append((posted()[0].received - start) * 1000)
            follower.wait()
        return times
    finally:
        if informers is not None:
            informers.stop()
        app.stop()
        kube.stop()


def measure_oversized_body(example: Path, work: Path, megabytes: int = 100) -> dict[str, float]:
    """An unsigned POST of `megabytes` to `fluxbot serve` (#20): time to its answer and how much the
    server's peak memory (VmHWM) grew. Before the body limit: a 401 after 9.6 s and +600 MB."""
    import socket

    standin = SlackStandIn(token="xoxb-bench").start()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "SLACK_BOT_TOKEN": "xoxb-bench", "SLACK_SIGNING_SECRET": SECRET,
           "FLUXBOT_SLACK_API_URL": standin.api_url}
    server = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
                               "--repo", str(example), "--state", str(work / "s-oversized")],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    try:
        assert server.stdout is not None
        for line in iter(server.stdout.readline, ""):
            if not line.startswith("{"):
                break

        def peak_kib() -> int:
            status = Path(f"/proc/{server.pid}/status").read_text()
            return int(next(l for l in status.splitlines() if l.startswith("VmHWM:")).split()[1])

        before = peak_kib()
        chunk = b"a" * (1024 * 1024)
        start = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port), timeout=60) as client:
            client.sendall(f"POST /slack/events HTTP/1.1\r\nHost: bench\r\nContent-Length: {megabytes * len(chunk)}\r\n"
                           "Content-Type: application/x-www-form-urlencoded\r\n\r\n".encode())
            try:
                for _ in range(megabytes):
                    client.sendall(chunk)
            except OSError:
                pass  # answered and closed before the body was sent
            status = client.recv(64).split(b" ")[1].decode()
        elapsed = (time.perf_counter() - start) * 1000
        return {"oversized_body_status": int(status), "oversized_body_ms": round(elapsed, 1),
                "oversized_body_peak_rss_growth_mb": round((peak_kib() - before) / 1024, 1)}
    finally:
        server.terminate()
        server.communicate(timeout=30)
        standin.stop()


def measure_follow_scale(example: Path, work: Path, clusters: int) -> dict[str, float]:
    """`clusters` clusters followed at once (one simulated Flux serves them all): fluxbot's threads
    and Python memory while following, and the time until every thread heard "applied"."""
    import tracemalloc

    from bot.kube.client import ClusterConnection, FluxCluster
    from bot.kube.follower import ReconcileFollower
    from bot.kube.informers import Informers
    from bot.store import Store
    from tests.standins.kubernetes import KubernetesStandIn

    def commit(ref: str) -> str:
        return git(example, "rev-parse", ref + "^{commit}")

    kube = KubernetesStandIn(bookmark_every=30)
    kube.flux.release("v0.3.0", commit("v0.3.0"))
    kube.flux.bootstrap("demo", commit("HEAD"), "v0.4.0", commit("v0.4.0"), owner_interval="1h")
    kubeconfig = str(kube.kubeconfig(work / f"kubeconfig-{clusters}"))
    names = [f"c{i:03}" for i in range(clusters)]
    posted: list[float] = []

    class Notifier:
        def post(self, *args, **kwargs) -> None:
            posted.append(time.perf_counter())

    store = Store(work / f"scale-{clusters}.db")
    expected = f"v0.3.0@sha1:{commit('v0.3.0')}"
    for name in names:
        store.add_follow(name, expected, "v0.3.0", "infrastructure", "infrastructure", "C", "1.1", time.time())
    ours = ("informer-", "reconcile-")
    before = len([t for t in threading.enumerate() if t.name.startswith(ours)])
    tracemalloc.start()
    start = time.perf_counter()
    connections = {n: FluxCluster(n, ClusterConnection(kubeconfig=kubeconfig, context="standin")) for n in names}
    informers = Informers(connections)
    follower = ReconcileFollower(None, store, connections, Notifier(), timeout=600, informers=informers, tick=1.0)
    try:
        follower.resume()
        assert wait_until(lambda: all(r["requested"] for r in store.open_follows()), 600), "follows did not start"
        synced = time.perf_counter() - start
        threads = len([t for t in threading.enumerate() if t.name.startswith(ours)]) - before
        traced = sum(stat.size for stat in tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, "*/tests/standins/*"), tracemalloc.Filter(False, "*/http/server.py"),
             tracemalloc.Filter(False, "*/socketserver.py")]).statistics("filename"))
        kube.flux.push_main("f" * 40, "v0.3.0")
        merged = time.perf_counter()
        assert wait_until(lambda: len(posted) >= clusters, 600), f"only {len(posted)} of {clusters} heard"
        return {f"follow_{clusters}_threads": threads, f"follow_{clusters}_python_mb": round(traced / 2 ** 20, 1),
                f"follow_{clusters}_started_ms": round(synced * 1000, 1),
                f"follow_{clusters}_all_notified_ms": round((max(posted) - merged) * 1000, 1),
                f"follow_{clusters}_cluster_wide_lists": len(kube.list_requests("helmreleases"))}
    finally:
        tracemalloc.stop()
        follower.stop()
        informers.stop()
        kube.stop()


def wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.002)
    return False


_ALIAS_BOMB = """
import resource, sys, time
sys.path.insert(0, {root!r})
from commands.model import CommandError
from commands.repo import documents
from commands.yamledit import replace_scalar
lines = ['  l0: &l0 "lol"'] + [f"  l{{i}}: &l{{i}} [" + ", ".join([f"*l{{i - 1}}"] * 10) + "]" for i in range(1, 10)]
text = "spec:\\n  ref:\\n    tag: v0.3.0\\nbomb:\\n" + "\\n".join(lines) + "\\n"
start = time.perf_counter()
try:
    documents(text.encode())
except ValueError:
    pass
read_ms = (time.perf_counter() - start) * 1000
start = time.perf_counter()
replace_scalar(text.encode(), 0, ("spec", "ref", "tag"), "v0.4.0")
edit_ms = (time.perf_counter() - start) * 1000
print(read_ms, edit_ms, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def measure_alias_bomb() -> tuple[float, float, float]:
    """Nine anchor lines (10**9 values expanded): refused on read, edited beside without expanding.
    (read ms, edit ms, peak RSS MB) of a fresh interpreter doing only that."""
    out = subprocess.run([sys.executable, "-c", _ALIAS_BOMB.format(root=str(ROOT))], capture_output=True, text=True,
                         check=True, timeout=300).stdout.split()
    return float(out[0]), float(out[1]), float(out[2])


def measure_store(url: str, replicas: int = 3, requests: int = 300) -> dict[str, object]:
    """The store on one backend (#19): a request journalled and answered; `replicas` stores claiming a
    backlog at once (each request must be claimed exactly once); how long a dead leader's lease takes
    to move to another replica (ttl 2 s)."""
    from bot.leader import Leadership
    from bot.store import Store

    stores = [Store(url) for _ in range(replicas)]
    try:
        journal = []
        for n in range(requests):
            start = time.perf_counter()
            stores[n % replicas].finish_request(
                stores[n % replicas].begin_request("U", f"status {n}", "C", f"{n}.1", [], False, 0.0))
            journal.append((time.perf_counter() - start) * 1000)
        backlog = {stores[0].begin_request("U", f"rollback c{n}", "C", f"{n}.2", [], False, 0.0, in_flight=0.0)
                   for n in range(requests)}
        claimed: list[int] = []
        start = time.perf_counter()

        def drain(store: Store) -> None:
            while True:
                due, _ = store.unanswered_requests(now=1.0)  # leases of 30 s and more: each claim once
                if not due:
                    return
                claimed.extend(row["id"] for row in due)

        with ThreadPoolExecutor(max_workers=replicas) as pool:
            list(pool.map(drain, stores))
        claim_ms = (time.perf_counter() - start) * 1000
        first = Leadership(stores[0], ttl=2.0, holder="a").start()
        first._stop.set()  # dies: no renewal, no resignation
        died = time.monotonic()
        second = Leadership(stores[1], ttl=2.0, holder="b")
        while not second.held:
            second.renew()
            time.sleep(0.02)
        failover = time.monotonic() - died
        return {"journal_p50_ms": round(percentile(journal, 50), 2), "journal_p99_ms": round(percentile(journal, 99), 2),
                "claims": len(claimed), "claims_expected": len(backlog), "claims_duplicated": len(claimed) - len(set(claimed)),
                "claims_lost": len(backlog - set(claimed)), "claim_all_ms": round(claim_ms, 1),
                "leader_failover_s": round(failover, 2)}
    finally:
        for store in stores:
            store.close()


def serve_process(config: Path, repo: Path, state: Path, standin: SlackStandIn, *flags: str,
                  **env: str) -> tuple[subprocess.Popen[str], str]:
    """`fluxbot serve` on a free port, once it listens; the process and its Slack events URL."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environment = {**os.environ, "SLACK_BOT_TOKEN": "xoxb-bench", "SLACK_SIGNING_SECRET": SECRET,
                   "FLUXBOT_SLACK_API_URL": standin.api_url, **env}
    process = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", "--config", str(config), "--repo", str(repo),
                                "--state", str(state), "--host", "127.0.0.1", "--port", str(port), *flags],
                               env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    for line in iter(process.stdout.readline, ""):
        if "serving Slack on" in line:
            break
    threading.Thread(target=process.stdout.read, daemon=True).start()  # keep the pipe drained
    return process, f"http://127.0.0.1:{port}/slack/events"


def slash(url: str, text: str, trigger: str, channel: str, slack_url: str) -> float:
    """A signed `/flux` request from U_BENCH (its response_url on the Slack stand-in at `slack_url`);
    the ms until it was acked."""
    body = urlencode({"command": "/flux", "text": text, "user_id": "U_BENCH", "channel_id": channel, "team_id": "T1",
                      "trigger_id": trigger, "response_url": f"{slack_url}/response/{trigger}"})
    ts = str(int(time.time()))
    request = urllib.request.Request(url, data=body.encode(), method="POST", headers={
        "Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": SignatureVerifier(SECRET).generate_signature(timestamp=ts, body=body)})
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=10) as reply:
        assert reply.status == 200
    return (time.perf_counter() - start) * 1000


def stop_processes(processes: list[subprocess.Popen[str]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()


def _everyone(store_url: str = "", lease: float = 0) -> str:
    """A fluxbot.yaml letting U_BENCH do anything, on the given store."""
    store = f"store:\n  url: '{store_url}'\n" + (f"  lease_seconds: {lease}\n" if lease else "") if store_url else ""
    return store + "permissions:\n  rules:\n    - actions: ['*']\n      clusters: ['*']\n      users: [U_BENCH]\n"


def measure_replicas(base: str, work: Path, count: int, replicas: int = 3) -> dict[str, object]:
    """The fleet figures on `replicas` replicas on PostgreSQL, and beside them on one replica on SQLite."""
    results = measure_fleet("", work / "sqlite", count, 1, "replicas_sqlite1_")
    url, drop = postgres_schema(base)
    if url is None:
        return {**results, "replicas": f"skipped: no PostgreSQL at {base} ({drop})"}
    try:
        return {**results, **measure_fleet(url, work / "postgresql", count, replicas, f"replicas_postgresql{replicas}_")}
    finally:
        drop()


def measure_fleet(url: str, work: Path, count: int, replicas: int, prefix: str) -> dict[str, object]:
    """`replicas` `fluxbot serve` processes on the store at `url` (SQLite in the replica's state dir
    if ""): `count` promotions to `count` clusters sent at once, spread over them (ack times, PRs
    opened, duplicates, lost); with several replicas, then the leader SIGKILLed (time until another leads)."""
    import signal

    from bot.store import Store

    repo = big_repo(work / "repo", count + 1, 5, 3, 10)
    config = work / "fluxbot.yaml"
    config.write_text(_everyone(url))
    standin = SlackStandIn(token="xoxb-bench").start()
    processes, urls = [], []
    try:
        for i in range(replicas):
            process, events = serve_process(config, repo, work / f"replica-{i}", standin)
            processes.append(process)
            urls.append(events)
        store = Store(url or work / "replica-0" / "fluxbot.db")
        latest = build_bot(Settings(repo=str(repo), state_dir=work / "reader")).snapshot().latest.tag
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=count) as pool:
            acks = list(pool.map(lambda n: slash(urls[n % replicas], f"promote {latest} to c{n:04d}",
                                                 f"t.replicas.{n}", f"C_{n}", standin.url), range(count)))
        opened = lambda: store.query("SELECT cluster FROM local_prs WHERE state = 'open'")  # noqa: E731
        done = wait_until(lambda: len(opened()) >= count, 300)
        all_ms = (time.perf_counter() - start) * 1000
        clusters = [r["cluster"] for r in opened()]
        results: dict[str, object] = {
            "": replicas, "promotions": count, "ack_p50_ms": round(percentile(acks, 50), 1),
            "ack_p99_ms": round(percentile(acks, 99), 1), "prs": len(clusters),
            "duplicates": len(clusters) - len(set(clusters)), "lost": count - len(set(clusters)),
            "all_opened_ms": round(all_ms, 1) if done else "timeout"}
        if replicas > 1:
            leader = store.leader("leader")
            killed = next(p for p in processes if leader and leader["holder"].endswith(f"/{p.pid}"))
            killed.send_signal(signal.SIGKILL)
            died = time.monotonic()
            moved = wait_until(lambda: (store.leader("leader") or {}).get("holder") not in (None, leader["holder"]), 120)
            results["leader_killed_failover_s"] = round(time.monotonic() - died, 1) if moved else "timeout"
        store.close()
        return {f"{prefix}{key}".rstrip("_"): value for key, value in results.items()}
    finally:
        stop_processes(processes)
        standin.stop()


def paced_acks(url: str, response_url: str, stop: Any, rate: float, clients: int, results: Any) -> None:
    """In a process of its own (Slack is remote: its clients must not share the bench's interpreter
    with the Slack stand-in): signed `help` requests at `rate` per second from `clients` clients until
    `stop` is set; (time.monotonic() when sent, ms until acked) pairs go to `results`."""
    timings: list[tuple[float, float]] = []

    def client(first: int) -> None:
        n, due = first, time.monotonic()
        while not stop.is_set():
            due += clients / rate
            time.sleep(max(0.0, due - time.monotonic()))
            sent = time.monotonic()
            # spread over channels as over a workspace: no channel near Slack's one post per second
            timings.append((sent, slash(url, "help", f"t.help.{n}", f"C_H{n % 400}", response_url)))
            n += clients

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put(timings)


def measure_ack_with_workers(work: Path, workers: int, running: int = 10, rounds: int = 3,
                             rate: float = 80.0) -> dict[str, object]:
    """Ack p50/p99 of a `fluxbot serve` process while `running` promotions run (`rounds` times), with
    the work in the serving process (`workers` 0) or in worker processes (#19). `help` requests arrive
    at `rate` per second from 4 clients; counted are those sent from a round's first promotion until
    its last PR opened."""
    import multiprocessing

    repo = big_repo(work / f"acks-{workers}", running * rounds + 1, 20, 3, 10)
    config = work / f"acks-{workers}.yaml"
    config.write_text(_everyone())
    standin = SlackStandIn(token="xoxb-bench").start()
    process, url = serve_process(config, repo, work / f"acks-state-{workers}", standin, "--workers", str(workers))
    spawn = multiprocessing.get_context("spawn")
    stop, results = spawn.Event(), spawn.Queue()
    try:
        latest = build_bot(Settings(repo=str(repo), state_dir=work / f"acks-reader-{workers}")).snapshot().latest.tag
        for n in range(3):  # a running server: the first requests' one-off costs (connections, caches) paid
            slash(url, "help", f"t.warm.{n}", "C_WARM", standin.url)
        clients = spawn.Process(target=paced_acks, args=(url, standin.url, stop, rate, 4, results))
        clients.start()
        time.sleep(1.0)  # the clients' interpreter has started and sends at its pace
        windows, took = [], []
        for r in range(rounds):
            start = time.monotonic()
            for n in range(r * running, (r + 1) * running):
                slash(url, f"promote {latest} to c{n:04d}", f"t.promote.{n}", f"C_{n}", standin.url)
            done = (r + 1) * running
            if not wait_until(lambda: sum("Opened" in p["text"] for p in standin.posts()) >= done, 300):
                return {"p99_ms": "timeout: the promotions did not all open their PR"}
            windows.append((start, time.monotonic()))
            took.append(windows[-1][1] - start)
            time.sleep(0.5)  # the answers of the round are delivered before the next starts
        stop.set()
        timings = [ms for sent, ms in results.get(timeout=120) if any(a <= sent <= b for a, b in windows)]
        clients.join(30)
        return {"p50_ms": round(percentile(timings, 50), 1), "p99_ms": round(percentile(timings, 99), 1),
                "acks": len(timings), "promotions_s": round(statistics.median(took), 1)}
    finally:
        stop.set()
        stop_processes([process])
        standin.stop()


def measure_owner_failover(base: str, work: Path, lease: float = 10.0) -> dict[str, object]:
    """Two `serve` replicas on PostgreSQL (`store.lease_seconds` 10); the one a rollback reaches
    SIGKILLs itself right after pushing the branch (the `after-push` failpoint). Time from its death
    to the answer in the thread, given by the other replica: one PR."""
    from bot.store import Store

    url, drop = postgres_schema(base)
    if url is None:
        return {"owner_failover": f"skipped: no PostgreSQL at {base} ({drop})"}
    repo = write_example_repo(work / "owner-failover")
    config = work / "owner-failover.yaml"
    config.write_text(_everyone(url, lease))
    standin = SlackStandIn(token="xoxb-bench").start()
    processes = []
    store = Store(url)
    try:
        dying, url_a = serve_process(config, repo, work / "owner-a", standin, FLUXBOT_FAILPOINT="after-push")
        processes.append(dying)
        processes.append(serve_process(config, repo, work / "owner-b", standin)[0])
        slash(url_a, "rollback demo", "t.owner", "C_BENCH", standin.url)
        if not wait_until(lambda: dying.poll() is not None, 60):
            return {"owner_failover": "the failpoint did not fire"}
        died = time.monotonic()
        answered = wait_until(lambda: any("Opened" in p["text"] for p in standin.posts()), 180)
        return {"owner_failover_s": round(time.monotonic() - died, 1) if answered else "timeout",
                "owner_failover_lease_s": lease,
                "owner_failover_answers": sum(1 for p in standin.posts() if "Opened" in p["text"]),
                "owner_failover_prs": store.query("SELECT count(*) AS n FROM local_prs")[0]["n"]}
    finally:
        stop_processes(processes)
        store.close()
        standin.stop()
        drop()


def worker_results(work: Path) -> dict[str, object]:
    results: dict[str, object] = {}
    for workers in (0, 2):
        for key, value in measure_ack_with_workers(work, workers).items():
            results[f"ack_10_promotions_workers{workers}_{key}"] = value
    return results


def postgres_schema(base: str):
    """A PostgreSQL URL on a schema of its own, and a function that drops it; (None, reason) without a server."""
    from contextlib import ExitStack

    from tests.standins.postgres import Unreachable, schema

    stack = ExitStack()
    try:
        url = stack.enter_context(schema(base, prefix="bench"))
    except Unreachable as error:
        return None, str(error)
    return url, stack.close


def store_results(work: Path, postgres: str, quick: bool) -> dict[str, object]:
    results: dict[str, object] = {}
    count = 100 if quick else 300
    for key, value in measure_store(f"sqlite:///{work / 'bench-store.db'}", requests=count).items():
        results[f"store_sqlite_{key}"] = value
    url, drop = postgres_schema(postgres)
    if url is None:
        results["store_postgresql"] = f"skipped: no PostgreSQL at {postgres} ({drop})"
        return results
    try:
        for key, value in measure_store(url, requests=count).items():
            results[f"store_postgresql_{key}"] = value
    finally:
        drop()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes; under a minute on 2 cores")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--only", choices=["store", "replicas", "workers", "failover"], help="run one section")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test",
                        help="a PostgreSQL for the store section (a schema of its own is made and dropped)")
    args = parser.parse_args()
    if args.only == "store":
        with tempfile.TemporaryDirectory(prefix="fluxbot-bench-") as tmp:
            return _print(store_results(Path(tmp), args.postgres, args.quick), args.json)
    if args.only == "failover":
        with tempfile.TemporaryDirectory(prefix="fluxbot-bench-") as tmp:
            return _print(measure_owner_failover(args.postgres, Path(tmp)), args.json)
    if args.only == "workers":
        with tempfile.TemporaryDirectory(prefix="fluxbot-bench-") as tmp:
            return _print(worker_results(Path(tmp)), args.json)
    if args.only == "replicas":
        with tempfile.TemporaryDirectory(prefix="fluxbot-bench-") as tmp:
            return _print(measure_replicas(args.postgres, Path(tmp), 20 if args.quick else 50), args.json)
    quick = args.quick
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # 50 requests at once queue, by design
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="fluxbot-bench-") as tmp:
        work = Path(tmp)
        example = write_example_repo(work / "example")

        # promotion vs the git floor (local forge, the flux-demo repo; the bundled example without ../shared)
        rounds = 5 if quick else 15
        if FLUX_DEMO.exists():
            repo, cluster, old, new = work / "flux-demo.git", "demo", "v0.3.0", "v0.4.0"
            git(work, "clone", "-q", "--bare", str(FLUX_DEMO), str(repo))
        else:
            repo, cluster, old, new = example, "prod-eu", "v0.3.0", "v0.4.0"
        results["promote_repo"] = "flux-demo" if FLUX_DEMO.exists() else "example (../shared is missing)"
        cold, *with_checks = measure_promote(repo, work / "s1", cluster, new, rounds, checks=True)
        _, *without = measure_promote(repo, work / "s2", cluster, new, rounds, checks=False)
        floor = measure_git_floor(repo, work, f"clusters/{cluster}/infrastructure.yaml", old, new, rounds)
        results["promote_ms"] = round(statistics.median(with_checks), 1)
        results["promote_cold_render_ms"] = round(cold, 1)
        results["promote_nochecks_ms"] = round(statistics.median(without), 1)
        results["git_floor_ms"] = round(statistics.median(floor), 1)
        results["promote_ratio_vs_git"] = round(statistics.median(with_checks) / statistics.median(floor), 2)
        results["promote_cold_render_ratio_vs_git"] = round(cold / statistics.median(floor), 2)
        results["promote_nochecks_ratio_vs_git"] = round(statistics.median(without) / statistics.median(floor), 2)

        # from Flux's last step (the simulated helm-controller) to the message in the Slack thread
        notify = measure_reconcile_notify(example, work, 3 if quick else 10)
        results["reconcile_notify_ms"] = round(statistics.median(notify), 1)
        results["reconcile_notify_max_ms"] = round(max(notify), 1)

        # `fluxbot check` (#18): start-up, then a one-cluster change and an infrastructure/ change, cold and warm
        for command in (["check", "--help"], ["shell", "--repo", str(example), "--state", str(work / "s-startup")]):
            ms, heavy = measure_startup(command, 3 if quick else 7)
            results[f"startup_{command[0]}_ms"] = ms
            results[f"startup_{command[0]}_imports"] = ", ".join(heavy) or "no kubernetes/github/slack clients"
        if FLUX_DEMO.exists() and shutil.which("kubectl"):
            demo = work / "flux-demo-check"
            git(work, "clone", "-q", str(FLUX_DEMO), str(demo))
            git(demo, "checkout", "-q", "main")
            one = commit_change(demo, "one", "clusters/demo/apps/values/podinfo.yaml", "podinfo.production", "podinfo.example")
            infra = commit_change(demo, "infra", "infrastructure/nginx/release.yaml", '"NodePort"', '"LoadBalancer"')
            for label, head in (("one_cluster", one), ("infrastructure", infra)):
                cold, warm, summary = measure_check(demo, work / f"check-demo-{label}", head)
                results[f"check_fluxdemo_{label}_cold_ms"], results[f"check_fluxdemo_{label}_warm_ms"] = cold, warm
                results[f"check_fluxdemo_{label}_result"] = summary
        else:
            results["check_fluxdemo"] = "skipped: ../shared or kubectl is missing"

        # an unsigned 100 MB body: refused with 413 before anything reads it (#20)
        results.update(measure_oversized_body(example, work))

        # ack latency while promotions run in the background
        app = SlackApp(example, work / "s3")
        try:
            count = 100 if quick else 500
            background = threading.Thread(target=lambda: [app.command(t) for t in
                                                         ("rollback demo", "promote v0.4.0 to prod-eu", "status")])
            background.start()
            with ThreadPoolExecutor(max_workers=8) as pool:
                acks = list(pool.map(lambda _: app.command("help"), range(count)))
            background.join()
            results["ack_p50_ms"] = round(percentile(acks, 50), 1)
            results["ack_p99_ms"] = round(percentile(acks, 99), 1)
        finally:
            app.stop()

        # the big repo, and how the cost grows with the number of clusters
        sizes = [10, 100] + ([] if quick else [1000])
        commits, tags = (1000, 20) if quick else (10000, 200)
        components = 20 if quick else 60
        for size in sizes:
            repo = big_repo(work / f"big{size}", size, components, tags, commits)
            bot = build_bot(Settings(repo=str(repo), state_dir=work / f"sb{size}", policy=Policy(trusted=True)))
            bot.handle("status", "bench")
            latest = bot.snapshot().latest.tag
            timings: dict[str, list[float]] = {}
            # three promotions to three clusters: each renders its own cluster, the first also the tag
            texts = [("status", "status"), ("versions", "versions")] + [
                ("promote", f"promote {latest} to c{n:04d}") for n in (1, 2, 3)]
            for label, text in texts:
                start = time.perf_counter()
                reply = bot.handle(text, "bench")
                timings.setdefault(label, []).append((time.perf_counter() - start) * 1000)
                assert not reply[0].title.startswith("✗") and reply[0].tone != "error", reply[0]
            for label, values in timings.items():
                results[f"bigrepo_{size}_{label}_ms"] = round(statistics.median(values), 1)
            results[f"bigrepo_{size}_promote_first_ms"] = round(timings["promote"][0], 1)
            if size == sizes[-1] and shutil.which("kubectl"):
                # the same repo with 10 clusters tracking main: a cluster file change renders one cluster,
                # an infrastructure/ change the 10 trackers (the infrastructure once per side)
                tracked = big_repo(work / f"bigcheck{size}", size, components, tags, min(commits, 1000), tracking=10)
                one = commit_change(tracked, "one", "clusters/c0001/infrastructure.yaml", "interval: 5m", "interval: 6m")
                infra = commit_change(tracked, "infra", "infrastructure/comp01/release.yaml", "interval: 30m", "interval: 31m")
                for label, head in (("one_cluster", one), ("infrastructure", infra)):
                    cold, warm, summary = measure_check(tracked, work / f"check-big-{label}", head)
                    results[f"check_bigrepo_{size}_{label}_cold_ms"] = cold
                    results[f"check_bigrepo_{size}_{label}_warm_ms"] = warm
                    results[f"check_bigrepo_{size}_{label}_result"] = summary
        results["bigrepo_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)

        # concurrency through the HTTP app: 50 promotions to 50 clusters, 20 identical requests
        n_clusters = 20 if quick else 50
        repo = big_repo(work / "conc", n_clusters + 1, 5, 3, 10)
        app = SlackApp(repo, work / "s4")
        try:
            latest = app.bot.snapshot().latest.tag
            with ThreadPoolExecutor(max_workers=n_clusters) as pool:
                acks = list(pool.map(lambda c: app.command(f"promote {latest} to c{c:04d}"), range(n_clusters)))
            done = wait_until(lambda: len(app.bot.forge.open_prs()) >= n_clusters, 300)
            prs = app.bot.forge.open_prs()
            results["concurrent_prs"] = len(prs)
            results["concurrent_expected"] = n_clusters
            results["concurrent_duplicates"] = len(prs) - len({p.cluster for p in prs})
            results["concurrent_lost"] = n_clusters - len({p.cluster for p in prs})
            results["concurrent_max_ack_ms"] = round(max(acks), 1)
            results["concurrent_all_done"] = done
            last = f"c{n_clusters:04d}"
            before = len(app.standin.posts())
            with ThreadPoolExecutor(max_workers=20) as pool:
                list(pool.map(lambda _: app.command(f"promote {latest} to {last}"), range(20)))
            # every one of the 20 requests is answered in its thread (one opens, 19 find that PR)
            wait_until(lambda: sum(1 for p in app.standin.posts()[before:] if p.get("thread_ts")) >= 20, 300)
            results["identical_requests_prs"] = sum(1 for p in app.bot.forge.open_prs() if p.cluster == last)
            results["identical_requests_answered"] = sum(1 for p in app.standin.posts()[before:] if p.get("thread_ts"))
        finally:
            app.stop()

    read_ms, edit_ms, rss = measure_alias_bomb()
    results["alias_bomb_refused_ms"] = round(read_ms, 1)
    results["alias_bomb_edit_beside_ms"] = round(edit_ms, 1)
    results["alias_bomb_peak_rss_mb"] = round(rss, 1)
    with tempfile.TemporaryDirectory(prefix="fluxbot-bench-") as tmp:
        # many clusters followed at once: threads, memory, time until every thread heard. After the
        # big repo: its 1,500 watch threads and stand-in would be the peak RSS measured there.
        for clusters in (50,) if quick else (50, 500):
            results.update(measure_follow_scale(write_example_repo(Path(tmp) / f"follow-{clusters}"), Path(tmp),
                                                clusters))
        results.update(store_results(Path(tmp), args.postgres, quick))
        results.update(measure_replicas(args.postgres, Path(tmp), 20 if quick else 50))
        results.update(worker_results(Path(tmp)))
        results.update(measure_owner_failover(args.postgres, Path(tmp)))
    return _print(results, args.json)


def _print(results: dict[str, object], as_json: bool) -> int:
    results["machine"] = f"{os.cpu_count()} cores, Python {sys.version.split()[0]}"
    if as_json:
        print(json.dumps(results))
    else:
        width = max(len(k) for k in results)
        for key, value in results.items():
            print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
