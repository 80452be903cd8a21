"""`fluxbot check-config`: clear verdicts on the config, and with --online on what it reaches."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path


SIGNING_SECRET = "8f742231b10e8888abcd99edc7f285a5"  # the shape of Slack's (32 hex characters)


def check(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot.cli", "check-config", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


def test_a_valid_config_online(example_repo: Path, tmp_path: Path, slack_standin) -> None:
    config = tmp_path / "fluxbot.yaml"
    config.write_text(f"repo: {example_repo}\nstate_dir: {tmp_path / 'state'}\npermissions:\n  rules:\n"
                      "    - actions: [promote]\n      users: [U1]\n")
    run = check("--config", str(config), "--online",
                env={"SLACK_BOT_TOKEN": "xoxb-test", "FLUXBOT_SLACK_API_URL": slack_standin.api_url,
                     "SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_APP_TOKEN": ""})
    assert run.returncode == 0, run.stdout + run.stderr
    assert "✓ slack" in run.stdout and "✓ repository" in run.stdout and "3 clusters on main" in run.stdout
    assert "- clusters" in run.stdout and "reconcile tracking is off" in run.stdout and "xoxb-test" not in run.stdout


def test_config_errors_say_where(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("permissions:\n  rules:\n    - actions: [deploy]\n")
    run = check("--config", str(config))
    assert run.returncode == 1
    assert "permissions.rules[0]" in run.stdout and "deploy" in run.stdout


def test_offline_warns_that_writes_are_denied_without_rules(tmp_path: Path) -> None:
    config = tmp_path / "f.yaml"
    config.write_text("repo: /nowhere\n")
    run = check("--config", str(config))
    assert run.returncode == 0 and "every write is denied" in run.stdout
    online = check("--config", str(config), "--online", env={"SLACK_BOT_TOKEN": ""})
    assert online.returncode == 1 and "✗ slack" in online.stdout and "/nowhere does not exist" in online.stdout


def test_a_wrong_type_is_a_clear_error_with_key_and_line_not_a_traceback(tmp_path: Path) -> None:
    config = tmp_path / "f.yaml"
    config.write_text("repo: /nowhere\ngate:\n  provider: slack\n  change_channel: C1\n  approvers_group: S1\n"
                      "  expire_hours: soon\n")
    run = check("--config", str(config))
    assert run.returncode == 1 and "Traceback" not in run.stderr + run.stdout
    assert "`gate.expire_hours` (line 6): is 'soon'; it must be a number" in run.stdout


def test_unknown_keys_are_refused_with_their_line_and_a_suggestion(tmp_path: Path) -> None:
    config = tmp_path / "f.yaml"
    config.write_text("repo: /nowhere\npermisions:\n  rules: []\nclusters:\n  prod:\n    in_clster: true\n")
    run = check("--config", str(config))
    assert run.returncode == 1
    assert "`permisions` (line 2): unknown key; did you mean `permissions`?" in run.stdout
    assert "`clusters.prod.in_clster` (line 6): unknown key; did you mean `in_cluster`?" in run.stdout


def test_a_slack_gate_needs_a_change_channel_and_approvers(tmp_path: Path) -> None:
    config = tmp_path / "f.yaml"
    config.write_text("repo: /nowhere\ngate:\n  provider: slack\n  change_channel: ''\n")
    run = check("--config", str(config))
    assert run.returncode == 1
    assert "`gate.change_channel` (line 4): is empty" in run.stdout
    assert "`gate.approvers_group` (line 3): is required" in run.stdout
    config.write_text("repo: /nowhere\ngate:\n  provider: none\n")
    assert check("--config", str(config)).returncode == 0


def test_duplicate_keys_and_a_local_repo_with_github_say_where(tmp_path: Path) -> None:
    config = tmp_path / "f.yaml"
    config.write_text("state_dir: /a\nrepo: /b\nstate_dir: /c\n")
    run = check("--config", str(config))
    assert run.returncode == 1 and "not valid YAML (line 3): found duplicate key \"state_dir\"" in run.stdout
    config.write_text("repo: /srv/fleet\nforge:\n  type: github\n  repository: platform/fleet\n")
    run = check("--config", str(config))
    assert run.returncode == 1 and "`repo` (line 1): is set, but forge.type is github" in run.stdout
    assert "forge.git_url" in run.stdout


def test_online_checks_the_signing_secret_and_the_app_token(example_repo: Path, tmp_path: Path, slack_standin) -> None:
    config = tmp_path / "f.yaml"
    config.write_text(f"repo: {example_repo}\nstate_dir: {tmp_path / 'state'}\n")
    slack_standin.socket_url = "ws://127.0.0.1:9/socket"  # apps.connections.open hands it out
    env = {"SLACK_BOT_TOKEN": "xoxb-test", "FLUXBOT_SLACK_API_URL": slack_standin.api_url}
    good = check("--config", str(config), "--online", env={**env, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                                                           "SLACK_APP_TOKEN": "xapp-test"})
    assert good.returncode == 0, good.stdout
    assert "✓ slack app token" in good.stdout and slack_standin.of("apps.connections.open")
    bad = check("--config", str(config), "--online", env={**env, "SLACK_SIGNING_SECRET": "paste-here",
                                                          "SLACK_APP_TOKEN": "xoxb-test"})
    assert bad.returncode == 1
    assert "! slack signing secret" in bad.stdout and "every request would get 401" in bad.stdout
    assert "✗ slack app token" in bad.stdout and "not an app-level token" in bad.stdout
    assert "xoxb-test" not in bad.stdout
    wrong = check("--config", str(config), "--online", env={**env, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                                                            "SLACK_APP_TOKEN": "xapp-revoked"})
    assert wrong.returncode == 1 and "apps.connections.open refused SLACK_APP_TOKEN: invalid_auth" in wrong.stdout


def test_online_a_configured_gate_needs_the_webhook_secret(tmp_path: Path) -> None:
    config = tmp_path / "f.yaml"
    config.write_text("forge:\n  type: github\n  repository: platform/fleet\n  base_url: http://127.0.0.1:9/api\n"
                      "gate:\n  change_channel: C1\n  approvers_group: S1\n")
    run = check("--config", str(config), "--online", env={"GITHUB_WEBHOOK_SECRET": "", "GITHUB_TOKEN": "t" * 20})
    assert run.returncode == 1
    assert "✗ github webhook secret" in run.stdout and "`gate:` is configured" in run.stdout


def test_online_names_the_kubernetes_access_a_cluster_lacks(example_repo: Path, tmp_path: Path, slack_standin,
                                                            kube) -> None:
    kubeconfig = kube.kubeconfig(tmp_path / "kubeconfig")
    config = tmp_path / "f.yaml"
    config.write_text(f"repo: {example_repo}\nstate_dir: {tmp_path / 'state'}\n"
                      f"clusters:\n  test:\n    kubeconfig: {kubeconfig}\n")
    env = {"SLACK_BOT_TOKEN": "xoxb-test", "FLUXBOT_SLACK_API_URL": slack_standin.api_url,
           "SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_APP_TOKEN": ""}
    allowed = check("--config", str(config), "--online", env=env)
    assert allowed.returncode == 0, allowed.stdout
    assert "✓ cluster test access" in allowed.stdout
    kube.denied = {("patch", "kustomizations"), ("watch", "helmreleases")}
    denied = check("--config", str(config), "--online", env=env)
    assert denied.returncode == 1
    assert "✗ cluster test access" in denied.stdout
    assert "may not watch helmreleases, patch kustomizations" in denied.stdout


def test_online_says_when_fluxbot_is_not_in_the_change_channel(example_repo: Path, tmp_path: Path, slack_standin) -> None:
    config = tmp_path / "fluxbot.yaml"
    config.write_text(f"repo: {example_repo}\nstate_dir: {tmp_path / 'state'}\ngate:\n  change_channel: C_CHANGES\n  approvers_group: S_CAB\n")
    env = {"SLACK_BOT_TOKEN": "xoxb-test", "FLUXBOT_SLACK_API_URL": slack_standin.api_url}
    assert re.search(r"✓ change channel +C_CHANGES: fluxbot is a member", check("--config", str(config), "--online", env=env).stdout)
    slack_standin.not_member_of.add("C_CHANGES")
    run = check("--config", str(config), "--online", env=env)
    assert run.returncode == 1 and "✗ change channel" in run.stdout and "not_in_channel" in run.stdout
    assert "/invite @fluxbot" in run.stdout
