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
class Settings:
    repo: str = ""
    state_dir: Path | None = None
    default_branch: str = ""
    productive: dict[str, bool] = field(default_factory=dict)  # per-cluster overrides

    def resolved_state_dir(self) -> Path:
        """The state dir: configured, or one per repo under the user's state home."""
        if self.state_dir:
            return Path(self.state_dir)
        base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "fluxbot"
        key = hashlib.sha256(str(Path(self.repo).resolve()).encode()).hexdigest()[:12]
        return base / f"{Path(self.repo).name}-{key}"


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
    for name, cluster in (data.get("clusters") or {}).items():
        if isinstance(cluster, dict) and "productive" in cluster:
            if not isinstance(cluster["productive"], bool):
                raise ConfigError(f"clusters.{name}.productive in {path} must be true or false")
            settings.productive[str(name)] = cluster["productive"]
    return settings
