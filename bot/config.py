"""Settings from `fluxbot.yaml` (path from `--config` or `FLUXBOT_CONFIG`) and the command line."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML


class ConfigError(Exception):
    """The configuration is wrong; the message says where and what would work."""


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


@dataclass
class Settings:
    repo: str = ""
    state_dir: Path | None = None
    default_branch: str = ""
    productive: dict[str, bool] = field(default_factory=dict)  # per-cluster overrides
    forge: ForgeSettings = field(default_factory=ForgeSettings)

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


def load_settings(path: str | None) -> Settings:
    """Read the config file if there is one; a missing file named explicitly is an error."""
    path = path or os.environ.get("FLUXBOT_CONFIG")
    if not path:
        return Settings()
    try:
        data: Any = YAML(typ="safe", pure=True).load(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except Exception as exc:  # ruamel raises several unrelated error types for bad YAML
        raise ConfigError(f"config file {path} is not valid YAML: {exc.__class__.__name__}") from None
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must be a mapping")
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
    for name, cluster in (data.get("clusters") or {}).items():
        if isinstance(cluster, dict) and "productive" in cluster:
            if not isinstance(cluster["productive"], bool):
                raise ConfigError(f"clusters.{name}.productive in {path} must be true or false")
            settings.productive[str(name)] = cluster["productive"]
    return settings
