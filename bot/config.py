"""Settings from `fluxbot.yaml` (path from `--config` or `FLUXBOT_CONFIG`) and the command line."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit
from typing import Any

from ruamel.yaml import YAML

from bot import schema
from bot.kube.client import ClusterConnection
from bot.store import Retention
from commands.gate import GatePolicy
from commands.layout import Layout
from commands.permissions import Policy, Rule

_ACTIONS = {"promote", "rollback", "release", "onboard", "app", "reconcile", "approve", "merge", "freeze", "unlock", "*"}


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, (str, int)) for v in value):
        return tuple(str(v) for v in value)
    raise ConfigError(f"{where} must be a string or a list of strings")


def _gate(data: Any, identities: Any, path: str) -> GateSettings:
    if not isinstance(data, dict) or not isinstance(identities, dict):
        raise ConfigError(f"`gate` and `identities` in {path} must be mappings")
    provider = data.get("provider", "slack")
    rollback = data.get("rollback", "expedite")
    if provider not in ("slack", "webhook", "none"):
        raise ConfigError(f"gate.provider in {path} is `{provider}`; use `slack`, `webhook` or `none`")
    if provider == "webhook" and not str(data.get("webhook_url", "")).startswith(("https://", "http://")):
        raise ConfigError(f"gate.webhook_url in {path} must be an http(s) URL when gate.provider is `webhook`")
    if rollback not in ("expedite", "require"):
        raise ConfigError(f"gate.rollback in {path} is `{rollback}`; use `expedite` or `require`")
    return GateSettings(
        policy=GatePolicy(provider=provider, rollback=rollback,
                          expire_seconds=float(data.get("expire_hours", 24)) * 3600),
        change_channel=str(data.get("change_channel", "")),
        approvers_group=str(data.get("approvers_group", "")),
        identities={str(k): str(v) for k, v in identities.items()},
        webhook_url=str(data.get("webhook_url", "")),
        webhook_token_env=str(data.get("webhook_token_env", "")),
    )


def _policy(data: Any, path: str) -> Policy:
    if not isinstance(data, dict):
        raise ConfigError(f"`permissions` in {path} must be a mapping")
    rules = []
    for index, rule in enumerate(data.get("rules") or []):
        where = f"permissions.rules[{index}] in {path}"
        if not isinstance(rule, dict):
            raise ConfigError(f"{where} must be a mapping")
        actions = _strings(rule.get("actions", rule.get("action")), f"{where}.actions")
        unknown = sorted(set(actions) - _ACTIONS)
        if not actions or unknown:
            raise ConfigError(f"{where}: unknown or missing actions {unknown}; use some of {sorted(_ACTIONS)}")
        rules.append(Rule(
            actions=actions,
            clusters=_strings(rule.get("clusters", "*"), f"{where}.clusters"),
            users=_strings(rule.get("users"), f"{where}.users"),
            groups=_strings(rule.get("groups"), f"{where}.groups"),
            channels=_strings(rule.get("channels"), f"{where}.channels"),
        ))
    read = _strings(data.get("read_channels", "*"), f"permissions.read_channels in {path}")
    return Policy(rules=tuple(rules), read_channels=read)


class ConfigError(Exception):
    """The configuration is wrong; the message says where and what would work."""

    def __init__(self, message: str, problems: list[schema.Problem] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


@dataclass
class ForgeSettings:
    """Where PRs live: `local` (SQLite records, the default) or `github`."""

    type: str = "local"
    repository: str = ""  # owner/name
    base_url: str = "https://api.github.com"  # Enterprise: https://HOST/api/v3
    git_url: str = ""  # default: derived from base_url and repository
    token_env: str = "GITHUB_TOKEN"
    app_id: str = ""
    app_private_key_file: str = ""
    app_installation_id: int = 0
    reviewers_team: str = ""
    seconds_between_writes: float = 1.0  # GitHub asks integrators to space out writes
    merge_method: str = ""  # merge | squash | rebase; default: the first the repository allows


@dataclass
class GateSettings:
    """The change gate: who decides, where requests are posted, and the identities to compare."""

    policy: GatePolicy = field(default_factory=GatePolicy)
    change_channel: str = ""
    approvers_group: str = ""
    identities: dict[str, str] = field(default_factory=dict)  # GitHub login -> Slack user ID
    webhook_url: str = ""  # provider `webhook`: where change requests are POSTed
    webhook_token_env: str = ""  # optional: a bearer token for it, from this environment variable


@dataclass
class SlackSettings:
    """Slack credentials come from the environment only, never from the config file."""

    bot_token: str = ""
    signing_secret: str = ""
    app_token: str = ""
    api_url: str = ""  # FLUXBOT_SLACK_API_URL: another Web API base (tests, enterprise proxies)
    confirm_ttl_seconds: float = 600.0
    group_cache_seconds: float = 300.0
    ephemeral_reads: bool = False  # `slack.ephemeral_reads`: reads by slash command answer only the asker

    @classmethod
    def from_env(cls, confirm_ttl_seconds: float = 600.0) -> "SlackSettings":
        return cls(
            bot_token=os.environ.get("SLACK_BOT_TOKEN", ""),
            signing_secret=os.environ.get("SLACK_SIGNING_SECRET", ""),
            app_token=os.environ.get("SLACK_APP_TOKEN", ""),
            api_url=os.environ.get("FLUXBOT_SLACK_API_URL", ""),
            confirm_ttl_seconds=confirm_ttl_seconds,
        )


@dataclass(frozen=True)
class StoreSettings:
    url: str = ""  # '' = SQLite under the state dir
    url_env: str = ""  # ...or the URL from this variable
    password_env: str = ""  # the PostgreSQL password, read from this variable (never from the config)
    lease_seconds: float = 120.0  # a request whose replica stopped renewing is taken over after this


@dataclass
class Settings:
    repo: str = ""
    state_dir: Path | None = None
    default_branch: str = ""
    productive: dict[str, bool] = field(default_factory=dict)  # per-cluster overrides
    forge: ForgeSettings = field(default_factory=ForgeSettings)
    policy: Policy = field(default_factory=Policy)  # deny-by-default until rules are configured
    gate: GateSettings = field(default_factory=GateSettings)
    connections: dict[str, ClusterConnection] = field(default_factory=dict)  # cluster -> how to reach it
    release_requires_green: str = ""  # `release.require_green_cluster`: e.g. the test cluster
    layout: Layout = field(default_factory=Layout)  # `layout:`: where things are in the fleet repo
    confirm_ttl_seconds: float = 600.0
    retention: Retention = field(default_factory=Retention)  # `retention:` how long the store keeps records
    slack_ephemeral_reads: bool = False
    store: StoreSettings = field(default_factory=lambda: StoreSettings())  # `store:` where state is kept

    def store_target(self, state_dir: Path) -> str:
        """The store's URL: `store.url` (or the variable `store.url_env` names), else the SQLite file
        under the state dir."""
        if self.store.url_env:
            url = os.environ.get(self.store.url_env, "")
            if not url:
                raise ConfigError(f"store.url_env names ${self.store.url_env}, which is empty; set it to "
                                  "postgresql://user@host:5432/database")
            return url
        return self.store.url or str(Path(state_dir) / "fluxbot.db")

    def resolved_state_dir(self) -> Path:
        """The state dir: configured, or one per repo under the user's state home."""
        if self.state_dir:
            return Path(self.state_dir)
        return self.resolved_state_dir_for(str(Path(self.repo).resolve()))

    def resolved_state_dir_for(self, identity: str) -> Path:
        """A state dir under the user's state home, one per repository identity."""
        base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "fluxbot"
        key = hashlib.sha256(identity.encode()).hexdigest()[:12]
        return base / f"{Path(identity).name}-{key}"


def _read(path: str) -> tuple[Any, Any]:
    """The config's data and its YAML node tree (for line numbers); bad YAML says where."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        return YAML(typ="safe", pure=True).load(text), YAML(typ="safe", pure=True).compose(text)
    except Exception as exc:  # ruamel raises several unrelated error types for bad YAML
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or exc.__class__.__name__
        raise ConfigError(f"config file {path} is not valid YAML{where}: {problem}") from None


def load_settings(path: str | None) -> Settings:
    """Read the config file if there is one; a missing file named explicitly is an error.

    The file is validated against bot/schema/fluxbot.schema.json first: unknown keys, wrong types
    and empty required values are refused with their key path and line.
    """
    path = path or os.environ.get("FLUXBOT_CONFIG")
    if not path:
        return Settings()
    data, nodes = _read(path)
    data = {} if data is None else data
    problems = schema.check(data, nodes)
    forge_type = (data.get("forge") or {}).get("type") if isinstance(data, dict) else None
    if not problems and forge_type == "github" and data.get("repo"):
        problems.append(schema.Problem("repo", schema.dotted_line(nodes, ["repo"]),
                                       "is set, but forge.type is github: fluxbot clones the GitHub repository "
                                       "itself; remove `repo`, or set forge.git_url for another clone URL"))
    if problems:
        raise ConfigError(f"config file {path} has {len(problems)} problem(s):\n"
                          + "\n".join(f"  {problem}" for problem in problems), problems)
    settings = Settings(
        repo=str(data.get("repo", "")),
        state_dir=Path(data["state_dir"]) if data.get("state_dir") else None,
        default_branch=str(data.get("default_branch", "")),
    )
    forge = data.get("forge") or {}
    if not isinstance(forge, dict):
        raise ConfigError(f"`forge` in {path} must be a mapping")
    known = set(ForgeSettings.__dataclass_fields__)
    unknown = sorted(set(forge) - known)
    if unknown:
        raise ConfigError(f"unknown forge setting(s) {', '.join(unknown)} in {path}; known: {', '.join(sorted(known))}")
    settings.forge = ForgeSettings(**forge)
    if settings.forge.type not in ("local", "github"):
        raise ConfigError(f"forge.type in {path} is `{settings.forge.type}`; use `local` or `github`")
    if settings.forge.type == "github" and "/" not in settings.forge.repository:
        raise ConfigError(f"forge.repository in {path} must be `owner/name` for GitHub")
    if settings.forge.merge_method not in ("", "merge", "squash", "rebase"):
        raise ConfigError(f"forge.merge_method in {path} is `{settings.forge.merge_method}`; use merge, squash or rebase"
                          " (one the repository allows), or leave it out to use the repository's settings")
    settings.policy = _policy(data.get("permissions") or {}, path)
    settings.gate = _gate(data.get("gate") or {}, data.get("identities") or {}, path)
    settings.release_requires_green = str((data.get("release") or {}).get("require_green_cluster", ""))
    layout = dict(data.get("layout") or {})
    if "per_cluster_variables" in layout:
        layout["per_cluster_variables"] = tuple(layout["per_cluster_variables"])
    settings.layout = Layout(**layout)  # the schema checked the keys and their types
    settings.confirm_ttl_seconds = float((data.get("slack") or {}).get("confirm_ttl_seconds", 600))
    settings.retention = Retention(**(data.get("retention") or {}))
    settings.slack_ephemeral_reads = bool((data.get("slack") or {}).get("ephemeral_reads", False))
    settings.store = StoreSettings(**(data.get("store") or {}))  # the schema checked the keys
    if urlsplit(settings.store.url).password:
        raise ConfigError(f"store.url in {path} holds a password; leave it out and name the environment variable "
                          "that holds it in store.password_env (the chart takes it from a Secret)")
    for name, cluster in (data.get("clusters") or {}).items():
        if isinstance(cluster, dict) and (cluster.get("context") or cluster.get("in_cluster") or cluster.get("kubeconfig")):
            settings.connections[str(name)] = ClusterConnection(
                context=str(cluster.get("context", "")), kubeconfig=str(cluster.get("kubeconfig", "")),
                in_cluster=bool(cluster.get("in_cluster", False)), namespace=str(cluster.get("namespace", "flux-system")))
        if isinstance(cluster, dict) and "productive" in cluster:
            if not isinstance(cluster["productive"], bool):
                raise ConfigError(f"clusters.{name}.productive in {path} must be true or false")
            settings.productive[str(name)] = cluster["productive"]
    return settings
