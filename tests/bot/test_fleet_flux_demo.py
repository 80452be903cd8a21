"""Issue 13 on the real flux-demo history: rollback never moves forward, productive fails closed,
onboarding and app values that are safe, and the messages that misled."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import branches, git, say


def merge_all(bot, repo: Path) -> None:
    for pr in bot.forge.open_prs():
        assert "Merged" in say(bot, f"pr merge {pr.number}", "bob")
    assert branches(repo) == []


# Rollback ---------------------------------------------------------------------------------------


def test_rollback_after_a_merged_rollback_goes_older(flux_demo: Path, make_bot) -> None:
    # demo's history: v0.1.0 -> v0.2.0 -> v0.3.0 -> v0.2.0 -> v0.3.0 (now)
    bot = make_bot(flux_demo)
    assert "Roll back demo to v0.2.0" in say(bot, "rollback demo")
    merge_all(bot, flux_demo)
    out = say(bot, "rollback demo")
    assert "Roll back demo to v0.1.0" in out, out  # never back up to v0.3.0, which was just backed out of
    assert branches(flux_demo) == ["fluxbot/rollback-demo-v0.1.0"]


def test_rollback_while_frozen_goes_older_too(flux_demo: Path, make_bot) -> None:
    bot = make_bot(flux_demo)
    say(bot, "rollback demo")
    merge_all(bot, flux_demo)
    assert "Froze demo" in say(bot, "freeze demo because incident")
    assert "Roll back demo to v0.1.0" in say(bot, "rollback demo")


def test_rollback_with_nothing_older_is_refused(flux_demo: Path, make_bot) -> None:
    bot = make_bot(flux_demo)
    say(bot, "rollback demo to v0.1.0")
    merge_all(bot, flux_demo)
    out = say(bot, "rollback demo")
    assert out.startswith("✗ there is no release older than `v0.1.0`"), out
    assert branches(flux_demo) == []
    assert "newer than `v0.1.0`" in say(bot, "rollback demo to v0.4.0")


def test_rollback_takes_the_next_older_release_when_the_cluster_never_ran_one(flux_demo: Path, make_bot) -> None:
    # promote to v0.4.0 and merge: demo never ran anything between v0.3.0 and v0.4.0, and it ran v0.3.0
    bot = make_bot(flux_demo)
    say(bot, "promote v0.4.0 to demo")
    merge_all(bot, flux_demo)
    assert "Roll back demo to v0.3.0" in say(bot, "rollback demo")


def test_a_rollback_fixed_when_offered_is_refused_once_the_pin_moved(flux_demo: Path, make_bot) -> None:
    bot = make_bot(flux_demo)
    out = say(bot, "rollback demo from v0.4.0 to v0.2.0")
    assert out.startswith("✗ `demo` is pinned to `v0.3.0` now, not `v0.4.0`"), out
    assert branches(flux_demo) == []
    assert "Roll back demo to v0.2.0" in say(bot, "rollback demo from v0.3.0 to v0.2.0")


def test_a_journalled_rollback_is_fixed_to_its_target_before_anything_is_pushed(flux_demo: Path, make_bot) -> None:
    bot = make_bot(flux_demo)
    say(bot, "rollback demo")
    (row,) = bot.store.query("SELECT text FROM requests")
    assert row["text"] == "rollback demo from v0.3.0 to v0.2.0"
    # the request is recovered after the rollback was merged by someone else: refused, not v0.1.0
    merge_all(bot, flux_demo)
    bot.store.query("UPDATE requests SET state = 'running' WHERE text LIKE 'rollback%'")
    ((request, response),) = bot.recover(everything=True)
    assert "pinned to `v0.2.0` now, not `v0.3.0`" in response.messages[0].title
    assert branches(flux_demo) == []


def test_a_rollback_waiting_out_a_forge_outage_keeps_the_target_it_was_offered(flux_demo: Path, make_bot) -> None:
    from bot.forge.base import ForgeUnavailable

    bot = make_bot(flux_demo)
    real = bot.forge.open_prs

    def down():
        raise ForgeUnavailable("GitHub is unavailable")

    bot.forge.open_prs = down
    from bot.service import Request

    response = bot.respond(Request("rollback demo because 5xx", "alice"))
    assert response.pending
    (row,) = bot.store.query("SELECT text FROM requests")
    assert row["text"] == "rollback demo from v0.3.0 to v0.2.0 because 5xx"
    bot.forge.open_prs = real
    ((_, retried),) = bot.recover(everything=True)
    assert "Roll back demo to v0.2.0" in retried.messages[0].title


def test_a_confirmation_carries_the_fixed_rollback(flux_demo: Path, make_bot) -> None:
    from bot.service import Request

    bot = make_bot(flux_demo)
    response = bot.respond(Request("rollback demo", "alice", "C1", confirm_risky=True))
    assert response.confirmation is not None
    assert response.fixed_text == "rollback demo from v0.3.0 to v0.2.0"
    assert branches(flux_demo) == []


# Input bounds -----------------------------------------------------------------------------------


def test_an_oversized_command_is_refused_briefly_without_echo(flux_demo: Path, make_bot) -> None:
    bot = make_bot(flux_demo)
    out = say(bot, "promote v0.4.0 to demo " + "x" * 100_000)
    assert out.startswith("✗ that command is 100,023 characters long; fluxbot takes at most 4,000")
    assert len(out) < 300 and "xxxx" not in out
    assert branches(flux_demo) == []


def test_an_oversized_reason_is_refused_and_never_reaches_a_commit(flux_demo: Path, make_bot) -> None:
    bot = make_bot(flux_demo)
    out = say(bot, "rollback demo because " + "word " * 700)
    assert "the reason is 3,499 characters long; fluxbot takes at most 300" in out
    assert branches(flux_demo) == []
    assert "at most 300" in say(bot, "freeze demo because " + "word " * 700)


def test_pr_bodies_and_commit_messages_stay_under_githubs_cap(flux_demo: Path, make_bot) -> None:
    # a changelog section of 20,000 entries (about 1 MB) for v0.4.0: the PR body quotes it
    changelog = flux_demo / "CHANGELOG.md"
    entries = "".join(f"- entry {i} " + "word " * 8 + "\n" for i in range(20_000))
    changelog.write_text(changelog.read_text().replace("## [0.4.0]\n\n### Changed\n\n", "## [0.4.0]\n\n### Changed\n\n" + entries))
    git(flux_demo, "commit", "-qam", "a long changelog")
    bot = make_bot(flux_demo)
    assert "Opened: PR #1" in say(bot, "promote v0.4.0 to demo")
    body = bot.forge.body(1)
    assert len(body) <= 65_536 and "cut at" in body
    assert len(git(flux_demo, "log", "-1", "--format=%B", "fluxbot/promote-demo-v0.4.0")) <= 65_536


# Productive clusters fail closed ----------------------------------------------------------------


def test_a_cluster_without_meta_productive_is_treated_as_productive(flux_demo: Path, make_bot) -> None:
    from bot.service import Request

    bot = make_bot(flux_demo)  # flux-demo's `test` cluster sets no meta_productive
    out = say(bot, "status test")
    assert "Productive:     unknown (treated as productive): no `meta_productive` in the postBuild.substitute of clusters/test/infrastructure.yaml" in out, out
    rows = {line.split()[0]: line for line in say(bot, "status").splitlines() if line.startswith("  test ")}
    assert "unknown" in rows["test"]



def without_meta_productive(flux_demo: Path) -> None:
    path = flux_demo / "clusters/demo/infrastructure.yaml"
    path.write_text(path.read_text().replace('      meta_productive: "true"\n', ""))
    git(flux_demo, "commit", "-qam", "demo without meta_productive, like a real fleet's prod-eu")


def test_confirmation_and_labels_apply_to_a_cluster_of_unknown_productivity(flux_demo: Path, make_bot) -> None:
    from bot.service import Request

    without_meta_productive(flux_demo)
    bot = make_bot(flux_demo)
    response = bot.respond(Request("rollback demo", "alice", "C1", confirm_risky=True))
    assert response.confirmation is not None, [m.title for m in response.messages]
    assert branches(flux_demo) == []
    out = say(bot, "rollback demo")
    assert "Productive: yes: the change gate applies" in out
    assert "productive" in bot.store.query("SELECT labels FROM local_prs")[0]["labels"]


def test_config_may_opt_a_cluster_out_of_productive(flux_demo: Path, make_bot) -> None:
    from bot.service import Request

    without_meta_productive(flux_demo)
    bot = make_bot(flux_demo, productive={"test": False, "demo": False})
    assert "Productive:     no (fluxbot.yaml: clusters.test.productive)" in say(bot, "status test")
    response = bot.respond(Request("rollback demo", "alice", "C1", confirm_risky=True))
    assert response.confirmation is None and "Opened: PR #1" in response.messages[0].title


def test_an_unreadable_meta_productive_is_unknown(flux_demo: Path, make_bot) -> None:
    path = flux_demo / "clusters/demo/infrastructure.yaml"
    path.write_text(path.read_text().replace('meta_productive: "true"', 'meta_productive: "${productive}"'))
    git(flux_demo, "commit", "-qam", "productive from elsewhere")
    out = say(make_bot(flux_demo), "status demo")
    assert "unknown (treated as productive): `meta_productive` is `${productive}`, not true or false" in out, out


# Onboarding and apps ----------------------------------------------------------------------------


def changed(repo: Path, branch: str) -> list[str]:
    diff = git(repo, "diff", f"main...{branch}")
    return [l for l in diff.splitlines() if l[:1] in "+-" and l[:3] not in ("+++", "---")]


def test_onboard_like_never_copies_identity_and_names_the_per_cluster_variables(flux_demo: Path, make_bot) -> None:
    bot = make_bot(flux_demo)
    out = say(bot, "onboard prod like demo")
    assert out.startswith("✗ `meta_network_zone`, `meta_productive` differ per cluster, so they are not copied from `demo`"), out
    assert "set meta_network_zone=... meta_productive=..." in out
    assert branches(flux_demo) == []


def test_onboard_like_demo_takes_a_new_identity_and_copies_the_apps(flux_demo: Path, make_bot) -> None:
    from commands.yamledit import load_documents

    bot = make_bot(flux_demo)
    out = say(bot, "onboard prod like demo set meta_network_zone=dmz-9 meta_productive=false")
    assert "Opened: PR #1 Onboard prod at v0.4.0" in out, out
    assert "copied from demo: app podinfo (resource ../../../apps/podinfo, values clusters/prod/apps/values/podinfo.yaml)" in out
    branch = "fluxbot/onboard-prod"
    infra = load_documents(git(flux_demo, "show", f"{branch}:clusters/prod/infrastructure.yaml"))
    variables = infra[1]["spec"]["postBuild"]["substitute"]
    assert variables["meta_cluster_name"] == "prod"  # never demo's
    assert (variables["meta_network_zone"], variables["meta_productive"]) == ("dmz-9", "false")
    assert variables["infrastructure_nginx_release_interval"] == "1m"  # shared variables are copied
    apps = git(flux_demo, "show", f"{branch}:clusters/prod/apps/kustomization.yaml")
    assert apps == git(flux_demo, "show", "main:clusters/demo/apps/kustomization.yaml")
    assert git(flux_demo, "show", f"{branch}:clusters/prod/apps/values/podinfo.yaml") == \
        git(flux_demo, "show", "main:clusters/demo/apps/values/podinfo.yaml")
    assert "app podinfo" in bot.forge.body(1)


def test_onboard_refuses_a_name_git_cannot_branch(flux_demo: Path, make_bot) -> None:
    out = say(make_bot(flux_demo), "onboard foo.lock like demo set meta_network_zone=a meta_productive=false")
    assert out.startswith("✗ `foo.lock` is not a valid cluster name"), out
    assert "`.lock`" in out and "Traceback" not in out
    assert branches(flux_demo) == []


def test_set_values_are_strings_unless_typed(flux_demo: Path, make_bot) -> None:
    from commands.yamledit import load_documents

    bot = make_bot(flux_demo)
    say(bot, "app remove podinfo from demo")
    say(bot, "pr merge 1")
    out = say(bot, 'app add podinfo to demo set image.tag=1.10 mode=0755 flag=on n=1e3 '
                   'podAnnotations."a/b"=c podAnnotations."x.y-z"=d replicas:=3 enabled:=false')
    assert "Opened: PR #2 Add podinfo to demo" in out, out
    raw = git(flux_demo, "show", "fluxbot/app-add-podinfo-demo:clusters/demo/apps/values/podinfo.yaml")
    values = load_documents(raw)[0]["spec"]["values"]
    assert values == {"image": {"tag": "1.10"}, "mode": "0755", "flag": "on", "n": "1e3",
                      "podAnnotations": {"a/b": "c", "x.y-z": "d"}, "replicas": 3, "enabled": False}
    # quoted in the file, so a YAML 1.1 reader (Helm, Flux) reads strings too
    assert 'flag: "on"' in raw and 'mode: "0755"' in raw and 'tag: "1.10"' in raw


@pytest.mark.parametrize("setting, says", [
    ("a..b=1", "a key is names of letters, digits, `_` and `-` joined by dots"),
    ('a."b=1', "a key is names of letters, digits, `_` and `-` joined by dots"),
    ("a:={nope", "`{nope` after `:=` is not JSON"),
    ("a=!!python/object:os.system", "`!!python/object:os.system` is YAML syntax (a tag, anchor or alias)"),
    ("a=*foo", "`*foo` is YAML syntax (a tag, anchor or alias)"),
    ("a:=" + "[" * 1_000 + "]" * 1_000, "nested deeper than"),
])
def test_bad_settings_are_one_line_refusals(flux_demo: Path, make_bot, setting: str, says: str) -> None:
    bot = make_bot(flux_demo)
    say(bot, "app remove podinfo from demo")
    say(bot, "pr merge 1")
    out = say(bot, f"app add podinfo to demo set {setting}")
    assert out.startswith("✗ ") and says in out and "internal error" not in out, out
    assert branches(flux_demo) == []


def test_app_remove_then_add_extends_the_lists_remove_left(flux_demo: Path, make_bot) -> None:
    bot = make_bot(flux_demo)
    out = say(bot, "app remove podinfo from demo")
    assert "Opened: PR #1 Remove podinfo from demo" in out
    assert "`prune: true` in clusters/demo/apps-base.yaml: Flux deletes podinfo's objects (namespace `podinfo`) from demo once this merges" in out, out
    assert "prune: true" in bot.forge.body(1)
    say(bot, "pr merge 1")
    out = say(bot, "app add podinfo to demo set ingress.enabled=x")
    assert "Opened: PR #2 Add podinfo to demo" in out, out
    text = git(flux_demo, "show", "fluxbot/app-add-podinfo-demo:clusters/demo/apps/kustomization.yaml")
    from commands.yamledit import load_documents

    data = load_documents(text)[0]
    assert data["resources"] == ["../../../apps/podinfo"]
    assert data["patches"] == [{"path": "./values/podinfo.yaml", "target": {"kind": "HelmRelease", "name": "podinfo"}}]


def test_an_app_name_refusal_reads_well(flux_demo: Path, make_bot) -> None:
    out = say(make_bot(flux_demo), "app add ../x to demo")
    assert "an app name has only letters" in out and "a app" not in out and "like `prod-eu`" not in out


# Hostile repo YAML (#20) ------------------------------------------------------------------------


def with_alias_bomb(flux_demo: Path) -> None:
    from tests.commands.test_yamledit import alias_bomb

    path = flux_demo / "clusters/demo/infrastructure.yaml"
    path.write_text(path.read_text() + alias_bomb(9))
    git(flux_demo, "commit", "-qam", "nine anchor lines in demo's postBuild.substitute")


@pytest.mark.parametrize("command", ["promote v0.4.0 to demo", "onboard x like demo set meta_network_zone=a meta_productive=false",
                                     "status demo"])
def test_an_alias_bomb_in_a_cluster_file_is_named_not_expanded(flux_demo: Path, make_bot, command: str) -> None:
    with_alias_bomb(flux_demo)
    out = say(make_bot(flux_demo), command)
    assert "clusters/demo/infrastructure.yaml is not valid YAML (its aliases expand to more than 10,000 extra values" in out, out
    assert "internal error" not in out and branches(flux_demo) == []


# Messages that misled ---------------------------------------------------------------------------


def test_a_merge_conflict_names_the_pin_main_has_marks_the_pr_stale_and_frees_the_cluster(flux_demo: Path, make_bot) -> None:
    bot = make_bot(flux_demo)
    say(bot, "promote v0.4.0 to demo")
    # a person moves the same pin on main meanwhile
    path = flux_demo / "clusters/demo/infrastructure.yaml"
    path.write_text(path.read_text().replace("tag: v0.3.0", "tag: v0.2.0"))
    git(flux_demo, "commit", "-qam", "hotfix: demo back to v0.2.0 by hand")
    out = say(bot, "pr merge 1")
    assert out.startswith("✗ PR #1 cannot merge: main changed clusters/demo/infrastructure.yaml meanwhile"), out
    assert "`spec.ref.tag` is `v0.2.0` on main now" in out
    assert "PR #1 is marked stale and closed; `demo` is free for a new change" in out
    assert "try again" not in out
    assert "No open fluxbot changes" in say(bot, "prs")
    assert branches(flux_demo) == []
    assert "stale" in bot.store.query("SELECT labels FROM local_prs WHERE number = 1")[0]["labels"]
    assert "Opened: PR #2 Promote demo to v0.4.0" in say(bot, "promote v0.4.0 to demo")


def test_a_dirty_work_tree_names_the_files(flux_demo: Path, make_bot) -> None:
    bot = make_bot(flux_demo)
    say(bot, "promote v0.4.0 to demo")
    (flux_demo / "README.md").write_text("local edit\n")
    out = say(bot, "pr merge 1")
    assert "uncommitted changes in README.md" in out, out
    assert "stderr" not in out and "remote rejected" not in out
    assert (flux_demo / "README.md").read_text() == "local edit\n"


def shell(cwd: Path, repo: str, state: Path, *lines: str):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "bot.cli", "shell", "--repo", repo, "--state", str(state), "--user", "tester"],
                          input="".join(line + "\n" for line in lines), capture_output=True, text=True, timeout=120, cwd=cwd,
                          env={**__import__("os").environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})


def test_repo_dot_pushes_into_the_repo_not_the_mirror(flux_demo: Path, tmp_path: Path) -> None:
    run = shell(flux_demo, ".", tmp_path / "s", "promote v0.4.0 to demo", "pr merge 1")
    assert "Opened: PR #1" in run.stdout and "Merged PR #1" in run.stdout, run.stdout + run.stderr
    assert "tag: v0.4.0" in (flux_demo / "clusters/demo/infrastructure.yaml").read_text()


def test_repo_file_url_is_a_git_url(flux_demo: Path, tmp_path: Path) -> None:
    run = shell(tmp_path, flux_demo.as_uri(), tmp_path / "s", "promote v0.4.0 to demo", "pr merge 1")
    assert "Opened: PR #1" in run.stdout and "Merged PR #1" in run.stdout, run.stdout + run.stderr
    assert git(flux_demo, "show", "main:clusters/demo/infrastructure.yaml").count("tag: v0.4.0") == 1


def test_a_path_inside_a_repo_says_where_the_repo_is(flux_demo: Path, tmp_path: Path) -> None:
    run = shell(tmp_path, str(flux_demo / "clusters"), tmp_path / "s", "status")
    assert run.returncode == 2
    assert f"{flux_demo / 'clusters'} is inside the git repository {flux_demo}; use --repo {flux_demo}" in run.stderr, run.stderr
    run = shell(tmp_path, str(tmp_path), tmp_path / "s2", "status")
    assert run.returncode == 2 and f"{tmp_path} is not a git repository" in run.stderr, run.stderr


def test_every_cluster_named_gets_its_line(flux_demo: Path, make_bot) -> None:
    bot = make_bot(flux_demo)
    say(bot, "rollback demo")
    out = say(bot, "promote v0.4.0 to demo,test")
    assert out.startswith("✗ cannot promote v0.4.0 to 2 of 2 clusters; nothing was opened"), out
    assert "demo: `demo` already has an open change: PR #1" in out
    assert "test: `test` tracks the branch `main`" in out
    assert branches(flux_demo) == ["fluxbot/rollback-demo-v0.2.0"]


def test_audit_of_a_cluster_lists_multi_cluster_requests_merges_and_closes(flux_demo: Path, make_bot) -> None:
    bot = make_bot(flux_demo)
    say(bot, "promote v0.4.0 to demo")
    say(bot, "pr merge 1")
    say(bot, "rollback demo")
    say(bot, "pr close 2")
    say(bot, "promote v0.4.0 to test,demo")
    say(bot, "status")
    out = say(bot, "audit demo")
    rows = [line for line in out.splitlines()[1:]]
    assert "clusters" in rows[0]
    commands = " | ".join(rows[1:])
    for command in ("promote v0.4.0 to demo", "pr merge 1", "rollback demo", "pr close 2", "promote v0.4.0 to test,demo"):
        assert command in commands, (command, out)
    assert "status" not in commands
    assert "test, demo" in out or "demo, test" in out
    assert (bot.store.query("SELECT clusters FROM audit WHERE command = 'pr merge 1'")[0]["clusters"]) == "demo"


def test_status_shows_freezes(flux_demo: Path, make_bot) -> None:
    bot = make_bot(flux_demo)
    say(bot, "freeze demo because incident INC-7")
    out = say(bot, "status demo")
    assert "Frozen:         yes, by alice: incident INC-7" in out, out
    rows = {line.split()[0]: line for line in say(bot, "status").splitlines() if line.startswith(("  demo ", "  test "))}
    assert "frozen" in rows["demo"] and "frozen" not in rows["test"]
    say(bot, "freeze all because release day")
    assert "Frozen:         yes, all clusters, by alice: release day" in say(bot, "status test")


def test_versions_shows_the_dates_of_annotated_tags_and_counts_in_words(flux_demo: Path, make_bot) -> None:
    out = say(make_bot(flux_demo), "versions")
    assert "4 releases" in out
    line = next(l for l in out.splitlines() if l.strip().startswith("v0.4.0"))
    assert "2025-06-02" in line, out  # the tagger date: flux-demo's changelog gives none
    assert "1 changelog entry" in out and "1 changelog entries" not in out


def test_one_release_is_not_one_releases(flux_demo: Path, make_bot) -> None:
    for tag in ("v0.1.0", "v0.2.0", "v0.3.0"):
        git(flux_demo, "tag", "-d", tag)
    assert say(make_bot(flux_demo), "versions").splitlines()[0] == "• 1 release"


# Layouts beyond the seed's ----------------------------------------------------------------------


def retag(repo: Path, rename) -> None:
    for tag in ("v0.1.0", "v0.2.0", "v0.3.0", "v0.4.0"):
        commit = git(repo, "rev-parse", f"{tag}^{{commit}}")
        git(repo, "tag", "-d", tag)
        git(repo, "tag", "-a", rename(tag), commit, "-m", f"Release {tag}")


def test_prefixed_tags_are_named_then_read_with_the_tag_prefix(flux_demo: Path, make_bot) -> None:
    from commands.layout import Layout

    retag(flux_demo, lambda tag: f"infra-{tag}")
    path = flux_demo / "clusters/demo/infrastructure.yaml"
    path.write_text(path.read_text().replace("tag: v0.3.0", "tag: infra-v0.3.0"))
    git(flux_demo, "commit", "-qam", "pin with the prefixed tag")
    out = say(make_bot(flux_demo), "versions")
    assert "No releases yet" in out and "set `layout.tag_prefix: infra-`" in out, out
    bot = make_bot(flux_demo, layout=Layout(tag_prefix="infra-"))
    out = say(bot, "versions")
    assert "4 releases" in out and "infra-v0.4.0" in out and "Added indirection layer" in out, out
    out = say(bot, "promote v0.4.0 to demo")
    assert "Opened: PR #1 Promote demo to infra-v0.4.0" in out, out
    assert "+    tag: infra-v0.4.0" in git(flux_demo, "diff", "main...fluxbot/promote-demo-infra-v0.4.0").splitlines()


def test_bare_tags_are_releases(flux_demo: Path, make_bot) -> None:
    retag(flux_demo, lambda tag: tag[1:])
    path = flux_demo / "clusters/demo/infrastructure.yaml"
    path.write_text(path.read_text().replace("tag: v0.3.0", "tag: 0.3.0"))
    git(flux_demo, "commit", "-qam", "pin with the bare tag")
    bot = make_bot(flux_demo)
    assert "4 releases" in say(bot, "versions")
    assert "Roll back demo to 0.2.0" in say(bot, "rollback demo")


def test_without_a_changelog_fluxbot_says_so_instead_of_empty_answers(flux_demo: Path, make_bot) -> None:
    git(flux_demo, "rm", "-q", "CHANGELOG.md")
    git(flux_demo, "commit", "-qm", "no changelog")
    bot = make_bot(flux_demo)
    out = say(bot, "versions")
    assert "no changelog entry" not in out
    assert "not understood: no CHANGELOG.md: releases show no changelog entries (set `layout.changelog`" in out, out
    out = say(bot, "release v0.5.0")
    assert "there is no CHANGELOG.md to release from" in out and "Unreleased" not in out.splitlines()[0], out


SEMANTIC = """# Changelog

## [0.4.0](https://github.com/f4z3r/flux-demo/compare/v0.3.0...v0.4.0) (2025-06-02)

### Features

* **infra:** indirection layer for component dependencies ([1b0fdd0](https://github.com/f4z3r/flux-demo/commit/1b0fdd0))

# [0.3.0](https://github.com/f4z3r/flux-demo/compare/v0.2.0...v0.3.0) (2024-09-05)

### Features

* add eso to infrastructure ([cdccaba](https://github.com/f4z3r/flux-demo/commit/cdccaba))
"""


def test_a_semantic_release_changelog_is_read_and_release_names_the_style(flux_demo: Path, make_bot) -> None:
    from commands.layout import Layout

    (flux_demo / "CHANGELOG.md").write_text(SEMANTIC)
    git(flux_demo, "commit", "-qam", "semantic-release changelog")
    bot = make_bot(flux_demo)
    out = say(bot, "versions")
    line = next(l for l in out.splitlines() if l.strip().startswith("v0.4.0"))
    assert "**infra:** indirection layer for component dependencies" in line and "1b0fdd0" not in line, out
    assert "add eso to infrastructure" in out
    assert "set `layout.changelog_style: semantic-release`" in out
    assert "set `layout.changelog_style: semantic-release`" in say(bot, "release v0.5.0")
    out = say(make_bot(flux_demo, layout=Layout(changelog_style="semantic-release")), "release v0.5.0")
    assert "semantic-release writes CHANGELOG.md and tags releases itself" in out
    assert branches(flux_demo) == []


def test_infrastructure_elsewhere_is_named_then_read_with_the_layout(flux_demo: Path, make_bot) -> None:
    from commands.layout import Layout

    git(flux_demo, "mv", "infrastructure", "platform")
    path = flux_demo / "clusters/demo/infrastructure.yaml"
    path.write_text(path.read_text().replace("path: ./infrastructure/", "path: ./platform/"))
    git(flux_demo, "commit", "-qam", "infrastructure lives in platform/")
    out = say(make_bot(flux_demo), "status demo")
    assert "set `layout.infrastructure: platform`" in out, out
    assert "no infrastructure/ directory on the default branch" in say(make_bot(flux_demo), "status")
    out = say(make_bot(flux_demo, layout=Layout(infrastructure="platform")), "status demo")
    assert "Pin:            v0.3.0" in out, out


def test_nested_clusters_are_named_then_read_with_the_cluster_depth(flux_demo: Path, make_bot) -> None:
    from commands.layout import Layout

    (flux_demo / "clusters/prod").mkdir()
    git(flux_demo, "mv", "clusters/demo", "clusters/prod/demo")
    git(flux_demo, "mv", "clusters/test", "clusters/prod/test")
    git(flux_demo, "commit", "-qm", "clusters grouped by environment")
    out = say(make_bot(flux_demo), "status prod")
    assert "set `layout.cluster_depth: 2`" in out, out
    bot = make_bot(flux_demo, layout=Layout(cluster_depth=2))
    out = say(bot, "status demo")
    assert "Pin:            v0.3.0" in out and "podinfo (values)" in out, out
    assert "no directory clusters/<group>/nope/" in say(bot, "status nope")
    out = say(bot, "rollback demo")
    assert "Opened: PR #1 Roll back demo to v0.2.0" in out, out
    assert "clusters/prod/demo/infrastructure.yaml" in git(flux_demo, "diff", "--name-only", "main...fluxbot/rollback-demo-v0.2.0")


def test_a_semver_pin_shows_the_tag_flux_selects_and_how_far_behind(flux_demo: Path, make_bot) -> None:
    path = flux_demo / "clusters/demo/infrastructure.yaml"
    path.write_text(path.read_text().replace("tag: v0.3.0", 'semver: ">=0.2.0 <0.4.0"'))
    git(flux_demo, "commit", "-qam", "demo follows a semver range")
    bot = make_bot(flux_demo)
    out = say(bot, "status demo")
    assert "Pin:            semver >=0.2.0 <0.4.0: Flux selects v0.3.0 (the newest matching tag)" in out, out
    assert "Behind:         1" in out
    rows = {line.split()[0]: line for line in say(bot, "status").splitlines() if line.startswith("  demo ")}
    assert "-> v0.3.0" in rows["demo"]
    line = next(l for l in say(bot, "versions").splitlines() if l.strip().startswith("v0.3.0"))
    assert "demo (semver)" in line
    path.write_text(path.read_text().replace('semver: ">=0.2.0 <0.4.0"', 'semver: ">=9.0.0"'))
    git(flux_demo, "commit", "-qam", "a range nothing matches")
    assert "no tag matches: Flux has nothing to apply" in say(make_bot(flux_demo), "status demo")
