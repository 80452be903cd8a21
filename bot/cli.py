"""`fluxbot` command line: `shell`, `example-repo` (and the server transports as they land)."""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
import getpass
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse
from urllib.request import url2pathname
from pathlib import Path

from bot.logs import REDACTOR, setup_logging
from bot.example_repo import write_example_repo
from bot.forge.base import ForgeError
from bot.forge.local import LocalForge
from bot.render import to_text
from bot.metrics import REGISTRY, RETENTION_DELETED, RateLimitCollector, StoreCollector
from bot.leader import Leadership
from bot.store import Retention, Store, StoreUnavailable
from bot.git.workspace import Workspace, WorkspaceError
from commands.permissions import Policy

if TYPE_CHECKING:
    from github import Auth

    from bot.config import ForgeSettings, Settings
    from bot.config import SlackSettings
    from bot.kube.follower import ReconcileFollower
    from bot.service import FluxBot, Response

# The Kubernetes and GitHub clients (through the config, the service and the forge) are imported
# where they are used: `fluxbot check` needs neither, and CI pays for every import at start (#18).


def local_repo(repo: str) -> str:
    """The repo as git should reach it: a URL as given, a path made absolute (`.` would otherwise
    mean the mirror once git runs inside it), a `file://` URL as its path; a path that is not the
    top of a git repository is refused, saying where the repository is."""
    from bot.config import ConfigError

    if repo.startswith("file://"):
        repo = url2pathname(urlparse(repo).path)
    elif "://" in repo or re.match(r"^[\w.-]+@[\w.-]+:", repo):
        return repo
    path = Path(repo).expanduser().resolve()
    if not path.exists():
        raise ConfigError(f"{path} does not exist")
    try:
        top = subprocess.run(["git", "-C", str(path), "rev-parse", "--show-toplevel"], capture_output=True,
                             text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        top = ""
    bare = (path / "HEAD").is_file() and (path / "objects").is_dir()
    if not top and not bare:
        raise ConfigError(f"{path} is not a git repository; give the directory that holds .git (or a git URL)")
    if top and Path(top).resolve() != path:
        raise ConfigError(f"{path} is inside the git repository {top}; use --repo {top}")
    return str(path)


def build_bot(settings: Settings) -> FluxBot:
    """Wire the bot for `settings`: the local forge by default, GitHub when configured."""
    from bot.service import FluxBot

    if settings.forge.type == "github":
        return _github_bot(settings)
    settings.repo = local_repo(settings.repo)
    state = settings.resolved_state_dir()
    store = Store(settings.store_target(state), settings.store.password_env)
    workspace = Workspace(settings.repo, state / "cache", settings.default_branch)
    bot = FluxBot(workspace, LocalForge(store, workspace), store, settings.productive, settings.policy)
    bot.lease_seconds = settings.store.lease_seconds
    bot.clusters = _clusters(settings)
    bot.release_requires_green = settings.release_requires_green
    bot.layout = settings.layout
    return bot


def _clusters(settings: Settings) -> dict[str, Any]:
    from bot.kube.client import FluxCluster

    return {name: FluxCluster(name, connection) for name, connection in settings.connections.items()}


def _github_auth(forge: ForgeSettings) -> Auth.Auth:
    from github import Auth

    from bot.config import ConfigError

    if forge.app_id:
        try:
            key = Path(forge.app_private_key_file).read_text()
        except OSError:
            raise ConfigError(f"cannot read the GitHub App private key file {forge.app_private_key_file}") from None
        return Auth.AppAuth(forge.app_id, key).get_installation_auth(int(forge.app_installation_id))
    token = os.environ.get(forge.token_env, "")
    if not token:
        raise ConfigError(f"GitHub is configured but ${forge.token_env} is empty; set it, or configure a GitHub App")
    return Auth.Token(token)


def _github_bot(settings: Settings) -> FluxBot:
    from github import Auth

    from bot.github.forge import GitHubForge, git_url_for
    from bot.service import FluxBot

    forge_settings = settings.forge
    auth = _github_auth(forge_settings)
    REDACTOR.add(getattr(auth, "token", None) if isinstance(auth, Auth.Token) else None)
    state = settings.state_dir or settings.resolved_state_dir_for(forge_settings.repository)
    store = Store(settings.store_target(Path(state)), settings.store.password_env)
    git_url = forge_settings.git_url or settings.repo or git_url_for(forge_settings.base_url, forge_settings.repository)
    holder: dict[str, GitHubForge] = {}
    workspace = Workspace(git_url, Path(state) / "cache", settings.default_branch,
                          credentials=lambda: holder["forge"].token())
    forge = GitHubForge(forge_settings.repository, auth, workspace, forge_settings.base_url,
                        forge_settings.reviewers_team, forge_settings.seconds_between_writes or None,
                        merge_method=forge_settings.merge_method)
    holder["forge"] = forge
    bot = FluxBot(workspace, forge, store, settings.productive, settings.policy)
    bot.lease_seconds = settings.store.lease_seconds
    bot.clusters = _clusters(settings)
    bot.release_requires_green = settings.release_requires_green
    bot.layout = settings.layout
    return bot


def _shell(args: argparse.Namespace) -> int:
    from bot.config import load_settings
    from bot.service import Request

    settings = load_settings(args.config)
    settings.repo = args.repo or settings.repo
    if args.example:
        settings.repo = str(_example_path())
        if settings.forge.type == "local" and not Path(settings.repo).exists():
            write_example_repo(Path(settings.repo))
    if not settings.repo and settings.forge.type != "github":
        print("fluxbot shell needs a repository: --repo PATH (try `fluxbot example-repo DIR` first)", file=sys.stderr)
        return 2
    if args.state:
        settings.state_dir = Path(args.state)
    # The shell's user is whoever runs it on their own machine; its --user is not verified, so
    # permission rules (which name Slack IDs) cannot apply: it is trusted like `git push` is.
    settings.policy = Policy(trusted=True)
    bot = build_bot(settings)
    user = args.user or getpass.getuser()
    for request, response in bot.recover(everything=True):
        if response.messages:
            print(f"> {request.text}  (asked by {request.user} before fluxbot stopped; answered now)")
        _print(bot, response)
    interactive = sys.stdin.isatty()
    if interactive:
        print(f"fluxbot shell on {settings.repo} as {user}. `help` lists commands; Ctrl-D quits.")
    while True:
        if interactive:
            try:
                line = input("fluxbot> ")
            except EOFError:
                print()
                return 0
        else:
            line = sys.stdin.readline()
            if not line:
                return 0
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line in ("exit", "quit"):
            return 0
        if not interactive:
            print(f"> {line}")
        _print(bot, bot.respond(Request(line, user)))


def _print(bot: FluxBot, response: Response) -> None:
    for message in response.messages:
        print(to_text(message), flush=True)
    bot.finish(response)


@dataclass
class Wired:
    """What `serve` and its workers run: the bot, its Slack transport, the follower, leadership, the gate."""

    settings: Settings
    slack: Any
    client: Any
    bot: FluxBot
    transport: Any
    follower: Any
    leadership: Leadership
    gate: Any  # the ChangeGate when GitHub and a webhook secret are configured, else None


WORKER_STORE = "FLUXBOT_WORKER_STORE"  # the store URL `serve --workers` hands its workers
WORKER_PARENT = "FLUXBOT_WORKER_PARENT"  # ...and its pid: it may die before a worker could ask for it


def _wire(args: argparse.Namespace, command: str) -> Wired | int:
    """Settings from the config, the environment and the flags, checked; everything wired. An int: the
    exit code of a refusal already printed."""
    from bot.config import SlackSettings, load_settings
    from bot.kube.follower import ReconcileFollower
    from bot.slack import SlackTransport, slack_token_problem, web_client

    settings = load_settings(args.config)
    settings.repo = args.repo or settings.repo
    if args.state:
        settings.state_dir = Path(args.state)
    if command == "work" and os.environ.get(WORKER_STORE):
        settings.store = dataclasses.replace(settings.store, url=os.environ[WORKER_STORE], url_env="")
    if not settings.repo and settings.forge.type != "github":
        print(f"fluxbot {command} needs a repository: --repo PATH or `repo:` in the config file", file=sys.stderr)
        return 2
    slack = SlackSettings.from_env(settings.confirm_ttl_seconds)
    slack.ephemeral_reads = settings.slack_ephemeral_reads
    missing = [name for name, value in (("SLACK_BOT_TOKEN", slack.bot_token), ("SLACK_SIGNING_SECRET", slack.signing_secret))
               if not value]
    if getattr(args, "socket_mode", False) and not slack.app_token:
        missing.append("SLACK_APP_TOKEN")
    if missing:
        print(f"fluxbot {command} needs {', '.join(missing)} in the environment", file=sys.stderr)
        return 2
    REDACTOR.add(slack.bot_token, slack.signing_secret, slack.app_token)
    client = web_client(slack)
    problem = slack_token_problem(client)
    if problem:
        print(f"fluxbot: cannot verify SLACK_BOT_TOKEN with Slack at {client.base_url} ({problem})", file=sys.stderr)
        return 2
    bot = build_bot(settings)
    transport = SlackTransport(bot, bot.store, slack, client)
    follower = ReconcileFollower(bot, bot.store, bot.clusters, transport)
    bot.merge_hooks.append(follower.on_merged)
    leadership = Leadership(bot.store, on_elected=follower.resume, on_deposed=follower.pause)
    follower.leading = lambda: leadership.held
    # the gate is wired in workers too: its merge guard must hold for a merge a worker runs
    gate = _change_gate(settings, bot, transport)
    return Wired(settings, slack, client, bot, transport, follower, leadership, gate)


def _serve(args: argparse.Namespace) -> int:
    from bot.server import build_server, stop_server
    from bot.slack import slack_token_problem

    wired = _wire(args, "serve")
    if isinstance(wired, int):
        return wired
    settings, slack, client, bot = wired.settings, wired.slack, wired.client, wired.bot
    transport, follower, leadership = wired.transport, wired.follower, wired.leadership
    webhook = _gate_webhook(wired.settings, bot, wired.gate, leadership) if wired.gate else None
    workers = _start_workers(args, bot) if args.workers else []
    transport.queue_only = bool(workers)
    if workers:
        # This process now only acks and journals; its few busy threads (posts, the journal) must not
        # hold an ack waiting for the GIL for CPython's default 5 ms slice.
        sys.setswitchinterval(0.001)
    probes = {
        "store": lambda: "" if bot.store.query("SELECT 1") else "no answer",
        "forge": lambda: (bot.forge.open_prs(), "")[1],
        "slack": lambda: slack_token_problem(client),
    }
    # In Socket Mode Slack's requests come over the socket; the HTTP server still serves GitHub's
    # webhooks, the probes and the metrics.
    server = build_server(None if args.socket_mode else transport.app, args.host, args.port, webhook=webhook,
                          probes=probes)
    REGISTRY.register(StoreCollector(bot.store))
    if hasattr(bot.forge, "rate_limit"):  # GitHub
        REGISTRY.register(RateLimitCollector(bot.forge.rate_limit))
    stop = _stop_on_signals()
    # Claimed before listening (so a new request is not replayed as well), replayed after: the
    # listener and the probes answer while the journal is worked off. With workers, they replay it.
    if transport.queue_only:
        if not bot.store.shared:
            bot.store.release_requests()  # one process on SQLite: what the dead one ran is due now
        claimed: Any = ([], [])
    else:
        claimed = bot.claim(everything=True)
    http = threading.Thread(target=server.run, name="http", daemon=True)
    http.start()
    socket_mode: Any = None
    if args.socket_mode:
        from slack_bolt.adapter.socket_mode import SocketModeHandler

        socket_mode = SocketModeHandler(transport.app, slack.app_token)
        socket_mode.connect()
        print(f"fluxbot connected to Slack in Socket Mode; probes and webhooks on "
              f"http://{args.host}:{server.effective_port}", flush=True)
    else:
        print(f"fluxbot serving Slack on http://{args.host}:{server.effective_port}/slack/events", flush=True)
    # the journal pass also takes over the requests of a replica that died: soon after their lease ends
    every = min(15.0, max(0.5, settings.store.lease_seconds / 4))
    threading.Thread(target=_start_up, args=(transport, leadership, follower, claimed, every), name="start-up",
                     daemon=True).start()
    threading.Thread(target=_keep_pruning, args=(bot.store, settings.retention, leadership), name="retention",
                     daemon=True).start()
    try:
        while not stop.wait(1.0):
            pass
        logging.getLogger(__name__).info("stopping: no new requests; finishing acked work")
    finally:
        if socket_mode is not None:
            socket_mode.close()
        stop_server(server, http)  # no new connections; requests being answered finish
        transport.close()  # answers already acked are delivered before the process ends
        leadership.stop()  # another replica takes over the follows now, not when the lease runs out
        follower.stop()
        _stop_workers(workers)
        bot.close()  # informer threads end before the interpreter does (daemon threads writing at exit abort it)
    logging.getLogger(__name__).info("stopped")
    return 0


def _start_workers(args: argparse.Namespace, bot: FluxBot) -> list[subprocess.Popen[bytes]]:
    """`--workers N`: N `fluxbot work` processes on this process's store, each with its own git
    mirror, so the work never shares an interpreter with the acks."""
    state = bot.workspace.cache_dir.parent
    common = [part for flag in ("--config", "--repo") if getattr(args, flag[2:]) for part in (flag, getattr(args, flag[2:]))]
    # this process's store, through the environment: a URL may hold a password, never put in argv
    env = {**os.environ, WORKER_STORE: bot.store.url.render_as_string(hide_password=False), WORKER_PARENT: str(os.getpid())}
    return [subprocess.Popen([sys.executable, "-m", "bot.cli", "work", *common, "--state", str(state / f"worker-{i}")],
                             env=env) for i in range(args.workers)]


def _stop_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    for worker in workers:
        worker.terminate()  # each finishes the request it runs, then exits
    for worker in workers:
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()


def _work(args: argparse.Namespace) -> int:
    """A worker: claims journalled requests, runs them and posts their answers; serves nothing."""
    wired = _wire(args, "work")
    if isinstance(wired, int):
        return wired
    stop = _stop_on_signals()
    if os.environ.get(WORKER_PARENT):  # started by `serve --workers`: it goes, we go
        threading.Thread(target=_stop_with_parent, args=(stop, int(os.environ[WORKER_PARENT])), name="parent",
                         daemon=True).start()
    # Below the serving process on the CPU: an ack waiting for a core behind a render is what the
    # workers exist to avoid (raising one's own niceness needs no privilege)
    os.nice(10)
    logging.getLogger(__name__).info("working off the journal")
    try:
        wired.transport.work(stop)
    finally:
        wired.transport.close()
        wired.follower.stop()
        wired.bot.close()
    return 0


def _stop_with_parent(stop: threading.Event, parent: int, every: float = 1.0) -> None:
    """Set `stop` once the process that started this one is gone (killed, say: it could not stop us).
    A worker left behind would keep claiming requests for a front nobody can reach any more."""
    while True:
        if os.getppid() != parent:
            logging.getLogger(__name__).warning("the serving process is gone; stopping after the current request")
            stop.set()
        if stop.wait(every):
            return


def _stop_on_signals() -> threading.Event:
    """SIGTERM and SIGINT set the returned event. As PID 1 in a container a signal without a handler
    is ignored (the kernel's rule for init), so without this every stop waits out the grace period."""
    stop = threading.Event()

    def handle(signum: int, frame: Any) -> None:
        logging.getLogger(__name__).info("received %s", signal.Signals(signum).name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handle)
    return stop


def _start_up(transport: Any, leadership: Leadership, follower: ReconcileFollower, claimed: Any,
              every: float = 15.0) -> None:
    """The slow start-up work, after the listener is up: replay the journal, run for leader, retry."""
    try:
        transport.recover(claimed=claimed)
    except Exception:
        logging.getLogger(__name__).exception("replaying the journal at start failed; it is retried")
    leadership.start()  # the leader resumes the follows
    _keep_recovering(transport, leadership, follower, every)


def _keep_recovering(transport: Any, leadership: Leadership, follower: ReconcileFollower, every: float = 15.0) -> None:
    """Requests whose answer Slack did not take, or that wait for the forge, are retried when due
    (each backs off on its own: 30 s, 1, 2, 4, 8, then every 10 min, about an hour in all). Every
    replica claims its share; the leader also picks up follows other replicas recorded."""
    while True:
        time.sleep(every)
        try:
            if transport.queue_only:
                transport.flush()  # the workers claim the requests; undelivered posts are ours too
            else:
                transport.recover()
            if leadership.held:
                follower.resume()
        except Exception:
            logging.getLogger(__name__).exception("retrying unanswered requests failed")


def _keep_pruning(store: Store, retention: Retention, leadership: Leadership, every: float = 3600.0) -> None:
    """Apply the retention settings at start and then hourly (audit, journal, delivery IDs), on the leader."""
    while True:
        try:
            if not leadership.held:
                time.sleep(60)
                continue
            deleted = store.prune(retention)
            for table, count in deleted.items():
                RETENTION_DELETED.labels(table=table).inc(count)
            if any(deleted.values()):
                logging.getLogger(__name__).info("retention deleted old rows", extra={"deleted": deleted})
        except Exception:
            logging.getLogger(__name__).exception("applying retention failed; retried in an hour")
        time.sleep(every)


def _change_gate(settings: Settings, bot: FluxBot, transport: Any) -> Any:
    """The change gate when GitHub and a webhook secret are configured, else None: what serve and its
    workers share (the merge guard, the PR body without the checks' report)."""
    secret = os.environ.get("GITHUB_WEBHOOK_SECRET", "")
    if settings.forge.type != "github" or not secret:
        return None
    from bot.github.gate import ChangeGate

    REDACTOR.add(secret, os.environ.get(settings.gate.webhook_token_env) if settings.gate.webhook_token_env else None)
    gate = ChangeGate(bot, bot.store, transport, settings.gate)
    transport.gate = gate
    bot.checks_in_comment = True  # every PR gets its rendered check from the webhook (#18), not in its body
    return gate


def _gate_webhook(settings: Settings, bot: FluxBot, gate: Any, leadership: Leadership) -> Any:
    """`/github/webhook` for the gate and the PR checks, and the leader's upkeep (serve only)."""
    from bot.github.webhooks import GitHubWebhook
    from bot.prcheck import PrChecks, fan_out

    def upkeep() -> None:
        caught_up, swept = False, time.monotonic()
        while True:
            held = leadership.held
            try:
                if held and not caught_up:  # what the forge did while no one led (or before this start)
                    gate.catch_up()
                if held and time.monotonic() - swept >= 60:
                    swept = time.monotonic()
                    gate.sweep()
            except Exception:
                logging.getLogger(__name__).exception("catching up with the forge or sweeping expired gates failed")
            caught_up = held
            time.sleep(2)

    threading.Thread(target=upkeep, name="gate-upkeep", daemon=True).start()
    checks = PrChecks(bot.workspace, bot.forge, notify=gate.notify)
    return GitHubWebhook(os.environ["GITHUB_WEBHOOK_SECRET"], bot.store, fan_out(checks.on_event, gate.on_event),
                         settings.forge.repository)


def _check_config(args: argparse.Namespace) -> int:
    """Validate the config; with --online also try Slack, the forge and the repository."""
    from bot.kube.client import ClusterError
    from bot.config import ConfigError, SlackSettings, load_settings

    rows: list[tuple[str, str, str]] = []
    try:
        settings = load_settings(args.config)
    except ConfigError as error:
        print(f"✗ config: {error}")
        return 1
    settings.repo = args.repo or settings.repo
    rows.append(("config", "ok", args.config or os.environ.get("FLUXBOT_CONFIG", "(none: defaults)")))
    rows.append(("forge", "ok", settings.forge.type + (f" {settings.forge.repository}" if settings.forge.repository else "")))
    writes = len(settings.policy.rules)
    rows.append(("permissions", "ok" if writes else "warn", f"{writes} rule(s)" + ("" if writes else ": every write is denied")))
    if args.online:
        rows += _slack_rows(SlackSettings.from_env(), settings.gate.change_channel)
        rows += _webhook_rows(settings)
        bot: FluxBot | None = None
        try:
            bot = build_bot(settings)
            bot.snapshot().cluster_names  # clone/fetch and read the repo
            rows.append(("repository", "ok", f"{len(bot.snapshot().cluster_names)} clusters on {bot.workspace.default_branch}"))
            bot.forge.open_prs()
            rows.append(("forge access", "ok", "listed open pull requests"))
        except (ConfigError, WorkspaceError, ForgeError) as error:
            rows.append(("repository/forge", "fail", str(error)))
        for name, cluster in _clusters(settings).items():
            try:
                items, _ = cluster.list("kustomizations")
                rows.append((f"cluster {name}", "ok", f"{len(items)} Kustomizations in {cluster.namespace}"))
                names = _reconcile_names(bot, name)
                missing = cluster.access(names)
                rows.append((f"cluster {name} access", "fail" if missing else "ok",
                             f"the service account may not {', '.join(missing)}: apply the chart's Role and "
                             "ClusterRole there" if missing else
                             f"get, list, watch the Flux kinds; patch {', '.join(names)} to ask for a reconcile"))
            except ClusterError as error:
                rows.append((f"cluster {name}", "fail", str(error)))
        if not settings.connections:
            rows.append(("clusters", "skip", "no cluster connections configured (reconcile tracking is off)"))
    width = max(len(r[0]) for r in rows)
    for name, state, detail in rows:
        mark = {"ok": "✓", "warn": "!", "fail": "✗", "skip": "-"}[state]
        print(f"{mark} {name:<{width}}  {detail}")
    return 1 if any(state == "fail" for _, state, _ in rows) else 0


Row = tuple[str, str, str]  # (what, ok|warn|fail|skip, detail)


def _slack_rows(slack: SlackSettings, change_channel: str = "") -> list[Row]:
    """The bot token (auth.test), fluxbot in the change channel (conversations.info), the signing
    secret's shape, the app token (apps.connections.open)."""
    from slack_sdk import WebClient
    from slack_sdk.errors import SlackApiError

    from bot.slack import channel_problem, slack_token_problem, web_client

    rows: list[Row] = []
    if slack.bot_token:
        client = web_client(slack)
        problem = slack_token_problem(client)
        rows.append(("slack", "fail" if problem else "ok", problem or "auth.test accepted SLACK_BOT_TOKEN"))
        if change_channel and not problem:
            missing = channel_problem(client, change_channel)
            rows.append(("change channel", "fail" if missing else "ok",
                         f"{change_channel}: {missing}; invite fluxbot there (`/invite @fluxbot`)" if missing
                         else f"{change_channel}: fluxbot is a member"))
    else:
        rows.append(("slack", "fail", "SLACK_BOT_TOKEN is not set"))
    if not slack.signing_secret:
        rows.append(("slack signing secret", "fail", "SLACK_SIGNING_SECRET is not set (Basic Information → App Credentials)"))
    elif not re.fullmatch(r"[0-9A-Za-z]{32}", slack.signing_secret):
        rows.append(("slack signing secret", "warn", "SLACK_SIGNING_SECRET is not 32 letters and digits like Slack's: "
                                                     "every request would get 401 (Basic Information → App Credentials)"))
    else:
        rows.append(("slack signing secret", "ok", "set, shaped like Slack's"))
    if not slack.app_token:
        rows.append(("slack app token", "skip", "SLACK_APP_TOKEN is not set (only Socket Mode needs it)"))
    elif not slack.app_token.startswith("xapp-"):
        rows.append(("slack app token", "fail", "SLACK_APP_TOKEN is not an app-level token (xapp-...; Basic "
                                                "Information → App-Level Tokens, scope connections:write)"))
    else:
        base_url = (slack.api_url.rstrip("/") + "/") if slack.api_url else WebClient.BASE_URL
        app_client = WebClient(base_url=base_url, timeout=10)
        try:
            app_client.apps_connections_open(app_token=slack.app_token)
            rows.append(("slack app token", "ok", "apps.connections.open accepted SLACK_APP_TOKEN (Socket Mode)"))
        except SlackApiError as error:
            rows.append(("slack app token", "fail", f"apps.connections.open refused SLACK_APP_TOKEN: "
                                                    f"{error.response.get('error', 'unknown error')}"))
        except OSError as error:
            rows.append(("slack app token", "fail", f"cannot reach Slack at {base_url}: {error.__class__.__name__}"))
    return rows


def _webhook_rows(settings: Settings) -> list[Row]:
    """GitHub's webhooks (and so the change gate) need GITHUB_WEBHOOK_SECRET."""
    if settings.forge.type != "github":
        return []
    gated = settings.gate.policy.provider == "webhook" or bool(settings.gate.change_channel)
    if os.environ.get("GITHUB_WEBHOOK_SECRET"):
        return [("github webhook secret", "ok", "set: /github/webhook and the change gate are on")]
    if gated:
        return [("github webhook secret", "fail", "GITHUB_WEBHOOK_SECRET is not set, but `gate:` is configured: "
                                                  "without it there is no /github/webhook and no change gate")]
    return [("github webhook secret", "warn", "GITHUB_WEBHOOK_SECRET is not set: no /github/webhook, no change gate")]


def _check(args: argparse.Namespace) -> int:
    """`fluxbot check`: the PR check (#18) of base..head of a repo on disk, for any CI."""
    import hashlib

    import git

    from bot.fleetcheck import check_change, resolve
    from commands.planreport import to_json, to_markdown, to_text

    source = Path(args.repo).resolve()
    try:
        source_repo = git.Repo(source)
    except (git.NoSuchPathError, git.InvalidGitRepositoryError):
        print(f"fluxbot check: {source} is not a git repository; give --repo the clone of your fleet repo",
              file=sys.stderr)
        return 2
    cache = Path(args.state) if args.state else (
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fluxbot" / "check"
        / hashlib.sha256(str(source).encode()).hexdigest()[:16])
    workspace = Workspace(str(source), cache, args.branch or "")
    workspace.refresh()
    with workspace.locked():
        base, head = resolve(workspace, args.base, source_repo), resolve(workspace, args.head, source_repo)
    result = check_change(workspace, base, head, args.base, args.head, args.branch or "")
    if args.format == "json":
        import json

        print(json.dumps(to_json(result), indent=2))
    elif args.format == "markdown":
        print(to_markdown(result))
    else:
        print(to_text(result))
    return 1 if result.failed else 0


def _reconcile_names(bot: FluxBot | None, cluster: str) -> tuple[str, ...]:
    """The objects fluxbot annotates on a cluster: flux-system, the infrastructure source and Kustomization."""
    try:
        found = bot.snapshot().cluster(cluster) if bot is not None else None
    except Exception:  # the repo is unreadable: that is reported on its own row
        found = None
    names = ["flux-system", found.backref.name if found and found.backref else "infrastructure",
             (found.kustomization if found else "") or "infrastructure"]
    return tuple(dict.fromkeys(names))


def _example_path() -> Path:
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "fluxbot" / "example-repo"


def _example_repo(args: argparse.Namespace) -> int:
    try:
        path = write_example_repo(Path(args.dir))
    except FileExistsError as exc:
        print(f"fluxbot: {exc}; choose an empty or new directory", file=sys.stderr)
        return 2
    print(f"example repo written to {path}; try: fluxbot shell --repo {path}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fluxbot", description="ChatOps for Flux GitOps mono-repos.")
    sub = p.add_subparsers(dest="command", required=True)
    shell = sub.add_parser("shell", help="a local chat against a repo on disk; PRs are local branches")
    where = shell.add_mutually_exclusive_group()
    where.add_argument("--repo", help="the mono-repo (a path or git URL)")
    where.add_argument("--example", action="store_true", help="use the bundled example repo (created on first use)")
    shell.add_argument("--user", help="who you are in the chat (default: your login)")
    shell.add_argument("--state", help="state dir (SQLite, git cache); default under ~/.local/state/fluxbot")
    shell.add_argument("--config", help="fluxbot.yaml (default: $FLUXBOT_CONFIG)")
    shell.set_defaults(run=_shell)
    serve = sub.add_parser("serve", help="serve Slack (HTTP mode, or Socket Mode) with the configured forge")
    serve.add_argument("--port", type=int, default=3000)
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--socket-mode", action="store_true", help="connect out to Slack with SLACK_APP_TOKEN")
    serve.add_argument("--repo", help="the mono-repo, when there is no config file")
    serve.add_argument("--state", help="state dir (SQLite, git cache)")
    serve.add_argument("--config", help="fluxbot.yaml (default: $FLUXBOT_CONFIG)")
    serve.add_argument("--workers", type=int, default=0,
                       help="run requests in N worker processes; this one only verifies, journals and acks")
    serve.set_defaults(run=_serve)
    work = sub.add_parser("work", help="a worker of `serve --workers`: runs journalled requests (started by serve)")
    work.add_argument("--repo", help="the mono-repo, when there is no config file")
    work.add_argument("--state", help="state dir (git cache)")
    work.add_argument("--config", help="fluxbot.yaml (default: $FLUXBOT_CONFIG)")
    work.set_defaults(run=_work)
    check = sub.add_parser("check-config", help="validate the config; --online also tries Slack and the forge")
    check.add_argument("--config", help="fluxbot.yaml (default: $FLUXBOT_CONFIG)")
    check.add_argument("--repo", help="the mono-repo, when the config has none")
    check.add_argument("--online", action="store_true", help="also check the Slack token, the repo and the forge")
    check.set_defaults(run=_check_config)
    plan = sub.add_parser("check", help="render base and head of a change per affected cluster, diff the objects, "
                                        "run the quality gates (exit 1 when one fails)")
    plan.add_argument("--repo", default=".", help="the fleet repo's clone (default: the current directory)")
    plan.add_argument("--base", required=True, help="the commit the change is made against (e.g. origin/main)")
    plan.add_argument("--head", required=True, help="the commit with the change (e.g. HEAD)")
    plan.add_argument("--format", choices=("text", "markdown", "json"), default="text")
    plan.add_argument("--branch", help="the branch clusters that track it follow (default: main, or master)")
    plan.add_argument("--state", help="cache dir for the mirror and renders (default under ~/.cache/fluxbot/check)")
    plan.set_defaults(run=_check)
    example = sub.add_parser("example-repo", help="write an example Flux mono-repo to DIR")
    example.add_argument("dir")
    example.set_defaults(run=_example_repo)
    return p


def _user_error(exc: Exception) -> bool:
    """A bad config or repository (said in one line), not a bug; only modules already loaded can
    have raised one, so this check imports nothing."""
    config = sys.modules.get("bot.config")
    return isinstance(exc, (WorkspaceError, StoreUnavailable)) or (config is not None and isinstance(exc, config.ConfigError))


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    serving = args.command == "serve"
    setup_logging(logging.INFO if serving else logging.WARNING, structured=serving)
    try:
        return args.run(args)
    except Exception as exc:
        if not _user_error(exc):
            raise
        print(f"fluxbot: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
