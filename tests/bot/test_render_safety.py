"""Repo content is untrusted input to the renders (#20) and what renders is validated (#13): remote
resources are refused before kubectl runs, kubectl gets no tokens, no network (where the machine
allows), a memory limit and a timeout; input is capped; symlinks out of the tree and schema
violations are one-line refusals naming the file; render errors keep kustomize's whole message."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from tests.bot.test_render_tree import commit_all, no_change_made, release_from, replaced
from tests.conftest import git, say, tool
from tests.standins.tcp import SilentListener


@pytest.fixture(autouse=True)
def _kubectl() -> None:
    tool("kubectl", "the quality gates render with `kubectl kustomize`")


@pytest.fixture
def listener():
    server = SilentListener()
    yield server
    server.close()


def wrap_kubectl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, before: str) -> Path:
    """Put a kubectl on PATH that runs `before` (sh), logs its call, then runs the real kubectl."""
    real = shutil.which("kubectl")
    wrapper = tmp_path / "bin" / "kubectl"
    wrapper.parent.mkdir(exist_ok=True)
    log = tmp_path / "kubectl.log"
    wrapper.write_text(f'#!/bin/sh\n{before}\necho "$2" >> "{log}"\nexec "{real}" "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrapper.parent}:{Path(real).parent}:/usr/bin:/bin")
    log.touch()
    return log


@pytest.mark.parametrize("entry", [
    "http://127.0.0.1:{port}/x.yaml",
    "git::http://127.0.0.1:{port}/repo.git//deploy?ref=v1",
    "ssh://git@127.0.0.1:{port}/repo.git//deploy",
    "https://127.0.0.1:{port}/repo.git//deploy?ref=v1",
    "github.com/example/fleet//deploy?ref=v1",
])
def test_a_remote_resource_is_refused_naming_the_file_and_nothing_connects(
        flux_demo: Path, make_bot, listener: SilentListener, entry: str) -> None:
    entry = entry.format(port=listener.port)
    apps = flux_demo / "clusters/demo/apps/kustomization.yaml"
    apps.write_text(apps.read_text().replace("resources:\n", f"resources:\n  - {entry}\n"))
    commit_all(flux_demo, "a remote resource")
    bot = make_bot(flux_demo)
    out = say(bot, "promote v0.4.0 to demo")
    assert out.startswith(f"✗ quality gate: clusters/demo/apps/kustomization.yaml loads the remote resource `{entry}`"), out
    assert listener.connections == 0
    no_change_made(bot, flux_demo)


def test_a_remote_base_in_a_nested_layer_of_a_tag_is_refused(flux_demo: Path, make_bot, listener: SilentListener) -> None:
    path = "infrastructure/nginx/kustomization.yaml"
    url = f"http://127.0.0.1:{listener.port}/nginx.yaml"
    release_from(flux_demo, "v0.4.0", "v0.5.0", {path: replaced(flux_demo, "v0.4.0", path, "  - ns.yaml\n", f"  - ns.yaml\n  - {url}\n")})
    bot = make_bot(flux_demo)
    out = say(bot, "promote v0.5.0 to demo")
    assert out.startswith(f"✗ quality gate: {path} loads the remote resource `{url}`"), out
    assert "Kustomization flux-system/nginx" in out and listener.connections == 0
    no_change_made(bot, flux_demo)


def test_kubectl_runs_with_a_minimal_environment(flux_demo: Path, make_bot, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    seen = tmp_path / "env.txt"
    wrap_kubectl(tmp_path, monkeypatch, f'env >> "{seen}"')
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_standin_token_0123456789")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    bot = make_bot(flux_demo)
    assert "Opened: PR #1" in say(bot, "promote v0.4.0 to demo")
    env = seen.read_text()
    assert "KUBECONFIG=/dev/null" in env
    for leaked in ("ghp_standin_token_0123456789", "xoxb-test", "proxy.invalid", f"HOME={os.environ.get('HOME')}\n"):
        assert leaked not in env


def test_kubectl_runs_without_network_where_the_machine_allows(flux_demo: Path, make_bot, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch, listener: SilentListener) -> None:
    from bot.git.render import isolation

    if not isolation().prefix:
        pytest.skip(f"renders run {isolation().description}")
    # a kubectl that tries to reach a listener on this machine before it renders
    probe = f"import socket; socket.create_connection(('127.0.0.1', {listener.port}), timeout=2)"
    wrap_kubectl(tmp_path, monkeypatch, f"'{sys.executable}' -c \"{probe}\" 2>/dev/null")
    bot = make_bot(flux_demo)
    assert "Opened: PR #1" in say(bot, "promote v0.4.0 to demo")
    assert listener.connections == 0
    assert "`kubectl kustomize` run without network (`unshare -" in bot.forge.body(1)


def test_a_render_that_runs_too_long_is_a_refusal_with_the_reason(flux_demo: Path, make_bot, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.git import render

    monkeypatch.setattr(render, "RENDER_TIMEOUT_SECONDS", 1.0)
    log = wrap_kubectl(tmp_path, monkeypatch, "sleep 30")
    bot = make_bot(flux_demo)
    out = say(bot, "promote v0.4.0 to demo")
    assert out.startswith("✗ quality gate: clusters/demo did not render within 1 s"), out
    # the failure is kept for the same trees: a retry is answered without running kubectl again
    assert say(bot, "promote v0.4.0 to demo") == out
    assert log.read_text() == ""  # the sleeping wrappers were stopped before they logged
    no_change_made(bot, flux_demo)


def test_kubectl_runs_under_a_memory_limit(flux_demo: Path, make_bot, monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.git import render

    monkeypatch.setattr(render, "MEMORY_LIMIT_BYTES", 48 * 2**20)
    bot = make_bot(flux_demo)
    out = say(bot, "promote v0.4.0 to demo")
    assert out.startswith("✗ quality gate: clusters/demo needs more than 48 MiB to render"), out
    no_change_made(bot, flux_demo)


def test_render_input_is_capped(flux_demo: Path, make_bot, monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.git import render

    monkeypatch.setattr(render, "MAX_INPUT_BYTES", 2 * 2**20)
    big = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big\ndata:\n" + "".join(f"  k{i}: {'x' * 80}\n" for i in range(40000))
    release_from(flux_demo, "v0.4.0", "v0.5.0", {"infrastructure/nginx/big.yaml": big})
    bot = make_bot(flux_demo)
    out = say(bot, "promote v0.5.0 to demo")
    assert out.startswith("✗ quality gate: the files a render of infrastructure/ at v0.5.0 reads are more than 2 MiB"), out
    assert "infrastructure/nginx/big.yaml" in out
    no_change_made(bot, flux_demo)


def test_a_symlink_to_an_absolute_path_is_a_one_line_refusal_naming_the_file(flux_demo: Path, make_bot) -> None:
    git(flux_demo, "checkout", "-q", "-b", "evil", "v0.4.0")
    (flux_demo / "infrastructure/nginx/passwd.yaml").symlink_to("/etc/passwd")
    commit_all(flux_demo, "an absolute link")
    git(flux_demo, "tag", "-a", "v0.5.0", "-m", "v0.5.0")
    git(flux_demo, "checkout", "-q", "main")
    bot = make_bot(flux_demo)
    out = say(bot, "promote v0.5.0 to demo")
    first = out.splitlines()[0]
    assert first == ("✗ quality gate: infrastructure/nginx/passwd.yaml at v0.5.0 is a symlink to an absolute path; "
                     "fluxbot renders only files inside the repository"), out
    assert "internal error" not in out and "Traceback" not in out
    no_change_made(bot, flux_demo)


def test_render_errors_keep_kustomizes_whole_message(flux_demo: Path, make_bot) -> None:
    # kubectl prints a multi-line error as klog's `err=<` ... ` >`: the last line alone says nothing
    path = "infrastructure/kustomization.yaml"
    release_from(flux_demo, "v0.4.0", "v0.5.0", {
        path: replaced(flux_demo, "v0.4.0", path, "          meta_network_zone: \"${meta_network_zone}\"\n",
                       "          meta_network_zone: \"${meta_network_zone}\"\n        broken: [\n"),
    })
    bot = make_bot(flux_demo)
    out = say(bot, "promote v0.5.0 to demo")
    first = out.splitlines()[0]
    assert first.startswith("✗ quality gate: infrastructure/ at v0.5.0 does not render: "), out
    assert "unable to parse SM or JSON patch" in first and not first.rstrip().endswith(">"), out
    no_change_made(bot, flux_demo)


def test_a_flux_object_that_fails_its_crd_schema_blocks_the_pr(flux_demo: Path, make_bot) -> None:
    release = "infrastructure/nginx/release.yaml"
    release_from(flux_demo, "v0.4.0", "v0.5.0", {
        release: replaced(flux_demo, "v0.4.0", release, "spec:\n  interval:", "spec:\n  suspend: \"yes\"\n  interval:"),
    })
    bot = make_bot(flux_demo)
    out = say(bot, "promote v0.5.0 to demo")
    assert out.startswith("✗ quality gate: HelmRelease ingress-nginx/ingress-nginx "
                          f"({release} at v0.5.0, applied by Kustomization flux-system/nginx"), out
    assert "is not valid: `spec.suspend`: 'yes' is not of type 'boolean'" in out, out
    no_change_made(bot, flux_demo)


def test_a_built_in_kind_that_fails_its_schema_blocks_the_pr(flux_demo: Path, make_bot) -> None:
    ns = "infrastructure/nginx/ns.yaml"
    release_from(flux_demo, "v0.4.0", "v0.5.0", {ns: git(flux_demo, "show", f"v0.4.0:{ns}") + "\nspec:\n  finalizers: kubernetes\n"})
    bot = make_bot(flux_demo)
    out = say(bot, "promote v0.5.0 to demo")
    assert out.startswith(f"✗ quality gate: Namespace ingress-nginx ({ns} at v0.5.0"), out
    assert "is not valid: `spec.finalizers`: 'kubernetes' is not of type 'array'" in out, out
    no_change_made(bot, flux_demo)


def test_the_pr_says_what_was_validated(flux_demo: Path, make_bot) -> None:
    bot = make_bot(flux_demo)
    assert "Opened: PR #1" in say(bot, "promote v0.4.0 to demo")
    body = bot.forge.body(1)
    assert "rendered objects valid against their schemas (Kubernetes 1." in body
    assert "CRDs from clusters/demo/flux-system/gotk-components.yaml" in body, body


def test_the_render_cache_is_capped_by_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from bot.git import render

    monkeypatch.setattr(render, "KEEP_BYTES", 2500)
    cache = render.RenderCache(tmp_path / "renders")
    for n in range(4):
        cache.put(f"key{n}", f"{n}" * 1000)
        time.sleep(0.01)  # distinct modification times
    assert sorted(p.name for p in (tmp_path / "renders").iterdir()) == ["key2.yaml", "key3.yaml"]


def test_large_files_beside_the_manifests_do_not_count_toward_the_cap(flux_demo: Path, make_bot,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # Images and docs at the top of a fleet repo are exported with it, but kustomize does not read them.
    from bot.git import render

    monkeypatch.setattr(render, "MAX_INPUT_BYTES", 2 * 2**20)
    (flux_demo / "docs").mkdir()
    (flux_demo / "docs/diagram.png").write_bytes(b"\x89PNG" + b"\0" * (3 * 2**20))
    commit_all(flux_demo, "a big picture")
    bot = make_bot(flux_demo)
    assert "Opened: PR #1" in say(bot, "promote v0.4.0 to demo")


def test_an_object_known_valid_is_checked_again_against_another_schema() -> None:
    """Validation results are remembered process-wide (a promotion re-validates the last one's
    objects); the schema is part of what is remembered, so a stricter CRD still refuses the object."""
    from bot.git.schemas import Schemas

    def crd(required: list[str]) -> dict:
        schema = {"type": "object", "properties": {"spec": {"type": "object", "required": required}}}
        return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "spec": {"group": "example.io", "names": {"kind": "Widget"},
                         "versions": [{"name": "v1", "schema": {"openAPIV3Schema": schema}}]}}

    widget = {"apiVersion": "example.io/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 1}}
    lenient, strict = Schemas(), Schemas()
    lenient.learn([(crd([]), "crds/lenient.yaml")])
    strict.learn([(crd(["colour"]), "crds/strict.yaml")])
    assert lenient.check(widget) is None
    assert lenient.check(widget) is None  # remembered
    problem = strict.check(widget)
    assert problem is not None and "colour" in problem.message
