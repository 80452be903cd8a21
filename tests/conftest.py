"""Shared fixtures: the flux-demo bundle from ../shared, the example repo, and a wired bot."""
from __future__ import annotations

import json
import logging
import os
import threading
import time
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

import pytest

from bot.config import Settings
from bot.example_repo import write_example_repo
from commands.permissions import Policy

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"

# Every secret the suite configures. Log records of the whole session, and every reply and PR body
# the stand-ins record, are scanned for them (the signing secret "s" is too short to grep; what it
# signs is checked by the signature tests instead).
SECRETS = ("ghp_standin_token_0123456789", "xoxb-test", "xapp-test", "webhook-secret-0123", "cab-token-123456", "ghs_installation_")


class _SecretScanner(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.leaks: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage() + (logging.Formatter().formatException(record.exc_info) if record.exc_info else "")
        text += " ".join(str(v) for v in record.__dict__.values() if isinstance(v, str))
        self.leaks += [f"log {record.name}: {secret}" for secret in SECRETS if secret in text]


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_any_log_line():
    """Scan every log record of the session (DEBUG and up, any logger) for the configured secrets."""
    scanner = _SecretScanner()
    root = logging.getLogger()
    level = root.level
    root.addHandler(scanner)
    root.setLevel(logging.DEBUG)
    yield scanner
    root.removeHandler(scanner)
    root.setLevel(level)
    assert scanner.leaks == [], f"secrets leaked into logs: {scanner.leaks[:5]}"


@pytest.fixture(autouse=True)
def no_informer_outlives_its_test():
    """A test that starts cluster informers stops them: leaked ones keep polling dead stand-ins (load
    that starved later tests) and write to a closed stderr at exit (the interpreter aborts, rc 134)."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5
    while True:
        leaked = [t.name for t in threading.enumerate() if t not in before and t.name.startswith("informer-")]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert leaked == [], f"informer threads still running after the test (stop them): {sorted(leaked)[:6]}"


def together(count: int, work) -> list:
    """Run `work(i)` on `count` threads released at the same moment; their results in order (races
    between replicas, double clicks, retries arriving at once)."""
    barrier, results = threading.Barrier(count), [None] * count

    def run(i: int) -> None:
        barrier.wait()
        results[i] = work(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def assert_no_secret(texts, where: str) -> None:
    leaks = [secret for text in texts for secret in SECRETS if secret in str(text)]
    assert leaks == [], f"secrets leaked into {where}: {leaks[:5]}"


def skip_or_fail(reason: str) -> NoReturn:
    """Skip a test whose prerequisite is missing here; under CI=true a missing prerequisite fails it."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def shared_file(relative: str) -> Path:
    """A file from ../shared; in CI its absence fails the test, elsewhere it skips it."""
    path = SHARED / relative
    if not path.exists():
        skip_or_fail(f"{path} is missing (the project's ../shared fixtures are not beside this clone)")
    return path


def tool(name: str, installed_by: str) -> str:
    """A command-line tool: next to this interpreter first (the venv's bin, not activated), then PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found is None:
        skip_or_fail(f"{name} is not installed here ({installed_by})")
    return found


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def say(bot, text: str, user: str = "alice") -> str:
    """Run a chat command on a bot and return its replies as the shell prints them."""
    from bot.render import to_text

    return "\n".join(to_text(m) for m in bot.handle(text, user))


def pid_of(owner: str) -> int:
    """The process in a store owner or leader holder (`host/pid`)."""
    return int(owner.rsplit("/", 1)[1])


def branches(repo: Path) -> list[str]:
    """Local branches of a repo other than main."""
    out = git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads")
    return [b for b in out.splitlines() if b != "main"]


@pytest.fixture(scope="session")
def _example_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_example_repo(tmp_path_factory.mktemp("template") / "fleet")


@pytest.fixture
def example_repo(tmp_path: Path, _example_template: Path) -> Path:
    """A fresh working copy of the example mono-repo (test, demo, prod-eu; v0.1.0..v0.4.0)."""
    target = tmp_path / "fleet"
    shutil.copytree(_example_template, target, symlinks=True)
    return target


@pytest.fixture
def flux_demo(tmp_path: Path) -> Path:
    """A clone of ../shared/fixtures/flux-demo.bundle with `main` checked out."""
    bundle = shared_file("fixtures/flux-demo.bundle")
    target = tmp_path / "flux-demo"
    git(tmp_path, "clone", "-q", str(bundle), str(target))
    git(target, "checkout", "-q", "main")
    return target


@pytest.fixture
def make_bot(tmp_path: Path):
    """Build a local-forge bot for a repo, with its state under the test's tmp dir."""
    from bot.cli import build_bot

    made = []

    def make(repo: Path, **overrides):
        overrides.setdefault("policy", Policy(trusted=True))
        settings = Settings(repo=str(repo), state_dir=tmp_path / f"state-{repo.name}", **overrides)
        made.append(build_bot(settings))
        return made[-1]

    yield make
    for bot in made:
        bot.close()  # its git processes and informer threads end with the test, as at a process exit


GITHUB_TOKEN = "ghp_standin_token_0123456789"


@pytest.fixture
def github_standin(tmp_path: Path):
    """A GitHub REST stand-in whose repository is a bare clone of the flux-demo bundle."""
    import json

    from tests.standins.github import GitHubStandIn

    payloads = shared_file("fixtures/payloads/github/pull_request.opened.json")
    example = json.loads(payloads.read_text())
    bundle = shared_file("fixtures/flux-demo.bundle")
    bare = tmp_path / "origin.git"
    git(tmp_path, "clone", "-q", "--bare", str(bundle), str(bare))
    standin = GitHubStandIn("platform", "flux-demo", bare, {
        "pull_request": example["pull_request"], "repository": example["repository"],
    }).start()
    yield standin
    standin.stop()
    assert_no_secret([p.get("body") for p in standin.pulls.values()] + [c for cs in standin.comments.values() for c in cs]
                     + [s.get("description") for ss in standin.statuses.values() for s in ss], "PR bodies, comments or statuses")


@pytest.fixture
def github_bot(github_standin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A bot wired to the GitHub stand-in through the real PyGithub client."""
    from bot.cli import build_bot
    from bot.config import ForgeSettings

    monkeypatch.setenv("GITHUB_TOKEN", GITHUB_TOKEN)

    made = []

    def make(**forge):
        settings = Settings(
            state_dir=tmp_path / "github-state",
            policy=Policy(trusted=True),
            forge=ForgeSettings(**{
                "type": "github", "repository": github_standin.full_name, "base_url": github_standin.base_url,
                "git_url": str(github_standin.bare_repo), "seconds_between_writes": 0, **forge,
            }),
        )
        made.append(build_bot(settings))
        return made[-1]

    yield make
    for bot in made:
        bot.close()


SLACK_SIGNING_SECRET = "s"
SLACK_BOT_TOKEN = "xoxb-test"


@pytest.fixture
def slack_standin():
    from tests.standins.slack import SlackStandIn

    standin = SlackStandIn(token=SLACK_BOT_TOKEN).start()
    yield standin
    standin.stop()
    # the bot token travels only in the Authorization header, never in what is posted
    assert_no_secret([json.dumps(c.params) for c in standin.calls], "Slack messages")
    # nothing fluxbot sent was refused by the stand-in as Slack would refuse it (tests that provoke
    # a refusal on purpose clear `rejected`)
    refused = [r for r in standin.rejected if r[1] in ("invalid_blocks", "no_text", "msg_too_long", "invalid_arguments")]
    assert refused == [], f"Slack would refuse these: {refused[:3]}"


class Served:
    """A fluxbot HTTP server on its own thread, stopped the way `fluxbot serve` stops it."""

    def __init__(self, server) -> None:
        self.server = server
        self.port = server.effective_port
        self._loop = threading.Thread(target=server.run, name="test-http", daemon=True)
        self._loop.start()

    def stop(self) -> None:
        from bot.server import stop_server

        stop_server(self.server, self._loop, timeout=2)


class SlackHarness:
    """The real HTTP app with a SlackTransport, and helpers that post signed Slack requests to it."""

    def __init__(self, transport, port: int, standin) -> None:
        import json as _json
        from urllib.parse import parse_qsl

        self.transport, self.standin = transport, standin
        self.url = f"http://127.0.0.1:{port}/slack/events"
        slash = shared_file("fixtures/payloads/slack/slash_command.urlencoded.txt").read_text()
        self._slash = dict(parse_qsl(slash))
        self._action = _json.loads(shared_file("fixtures/payloads/slack/block_actions.button.json").read_text())
        self._event = _json.loads(shared_file("fixtures/payloads/slack/app_mention.event_callback.json").read_text())
        self._counter = 0

    def post(self, body: str, content_type: str, secret: str = SLACK_SIGNING_SECRET, timestamp: int | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, str]:
        import time as _time
        import urllib.error
        import urllib.request

        from slack_sdk.signature import SignatureVerifier

        ts = str(timestamp if timestamp is not None else int(_time.time()))
        signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)
        request = urllib.request.Request(self.url, data=body.encode(), method="POST", headers={
            "Content-Type": content_type, "X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature,
            **(headers or {}),
        })
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:
                return reply.status, reply.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def command(self, text: str, user: str = "U_ALICE", channel: str = "C_OPS", trigger_id: str = "",
                should_escape: bool = False, **kw):
        """A signed `/flux` request; its text encoded as Slack encodes it (`should_escape`: the manifest's)."""
        from urllib.parse import urlencode

        self._counter += 1
        fields = {**self._slash, "command": "/flux", "text": self.standin.encode(text, links=should_escape),
                  "user_id": user, "channel_id": channel,
                  "trigger_id": trigger_id or f"trigger.{self._counter}",
                  "response_url": f"{self.standin.url}/response/{self._counter}"}
        return self.post(urlencode(fields), "application/x-www-form-urlencoded", **kw)

    def mention(self, text: str, user: str = "U_ALICE", channel: str = "C_OPS", event_id: str = "Ev1",
                ts: str = "", thread_ts: str = "", **kw):
        """A signed app_mention event; `@fluxbot` in `text` marks where the bot is mentioned (else first)."""
        import copy
        import json as _json

        body = copy.deepcopy(self._event)
        encoded = self.standin.encode(text if "@fluxbot" in text else f"@fluxbot {text}").replace("@fluxbot", "<@UBOT>")
        body["event"].update(text=encoded, user=user, channel=channel, ts=ts or body["event"]["ts"],
                             event_ts=ts or body["event"]["event_ts"])
        if thread_ts:
            body["event"]["thread_ts"] = thread_ts
        body["event_id"] = event_id
        return self.post(_json.dumps(body), "application/json", **kw)

    def click(self, action_id: str, value: str, user: str, channel: str = "C_OPS", message_ts: str = "1.2",
              thread_ts: str = ""):
        """A signed block_actions click; `thread_ts` when the message clicked is in a thread (as Slack sends it)."""
        import copy
        import json as _json
        from urllib.parse import quote

        body = copy.deepcopy(self._action)
        body["user"].update(id=user)
        body["actions"][0].update(action_id=action_id, value=value, block_id="fluxbot")
        body["channel"]["id"] = channel
        body["container"].update(channel_id=channel, message_ts=message_ts)
        if thread_ts:
            body["container"]["thread_ts"] = thread_ts
            body["message"] = {"type": "message", "ts": message_ts, "thread_ts": thread_ts}
        body["response_url"] = f"{self.standin.url}/response/action"
        return self.post(f"payload={quote(_json.dumps(body))}", "application/x-www-form-urlencoded")

    def thread_texts(self, root_ts: str) -> list[str]:
        return [p["text"] for p in self.standin.posts() if p.get("thread_ts") == root_ts]


@pytest.fixture
def slack_app(slack_standin, example_repo: Path, tmp_path: Path):
    """Start the real HTTP app (waitress + Bolt) for a repo and a permission policy."""

    from bot.cli import build_bot
    from bot.config import SlackSettings
    from bot.server import build_server
    from bot.slack import SlackTransport

    running = []

    def start(policy: Policy, repo: Path | None = None, ttl: float = 600.0, clock=None, store_url: str = "") -> SlackHarness:
        from bot.config import StoreSettings

        bot = build_bot(Settings(repo=str(repo or example_repo), state_dir=tmp_path / "slack-state", policy=policy,
                                 store=StoreSettings(url=store_url)))
        settings = SlackSettings(bot_token=SLACK_BOT_TOKEN, signing_secret=SLACK_SIGNING_SECRET,
                                 api_url=slack_standin.api_url, confirm_ttl_seconds=ttl)
        transport = SlackTransport(bot, bot.store, settings, **({"clock": clock} if clock else {}))
        served = Served(build_server(transport.app, "127.0.0.1", 0))
        running.append((served, transport, bot))
        return SlackHarness(transport, served.port, slack_standin)

    yield start
    for served, transport, bot in running:
        served.stop()
        transport.close()
        bot.close()


@pytest.fixture
def kube():
    """A Kubernetes API stand-in serving the three Flux kinds."""
    from tests.standins.kubernetes import KubernetesStandIn

    standin = KubernetesStandIn()
    yield standin
    standin.stop()


def flux_status(name: str) -> dict:
    """A status block from ../shared/fixtures/payloads/flux/ (the real shapes, from Flux's API docs)."""
    from ruamel.yaml import YAML

    docs = list(YAML(typ="safe", pure=True).load_all(shared_file(f"fixtures/payloads/flux/{name}").read_text()))
    return next(d for d in docs if d and "status" in d)["status"]


POSTGRES_URL = os.environ.get("FLUXBOT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path: Path):
    """A fresh store's URL on each backend: a SQLite file, or a schema of its own on the PostgreSQL
    server at 127.0.0.1:5432 (dropped afterwards). Every Store made from it shares one database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fluxbot.db'}"
        return
    from contextlib import ExitStack

    from tests.standins.postgres import Unreachable, schema

    with ExitStack() as stack:
        try:
            url = stack.enter_context(schema(POSTGRES_URL))
        except Unreachable as error:
            skip_or_fail(f"no PostgreSQL answers at {POSTGRES_URL} ({error}); "
                         "the store tests on PostgreSQL need one (trust auth, database test)")
        yield url
