"""The repository model: back-references found by content, pins, productive flags, versions."""
from __future__ import annotations

from commands.changelog import parse_changelog
from commands.model import Pin
from commands.repo import RepoSnapshot
from tests.commands.conftest import CHANGELOG, build_reader


def test_clusters_are_the_directories_under_clusters(repo: RepoSnapshot) -> None:
    assert repo.cluster_names == ["broken", "lab", "nosource", "prod", "semver", "stage"]
    assert repo.cluster("nope") is None


def test_back_reference_found_by_kind_name_and_source_in_any_file(repo: RepoSnapshot) -> None:
    prod = repo.cluster("prod")
    assert prod.backref.path == "clusters/prod/flux.yml"
    assert prod.backref.document == 1
    assert prod.backref.name == "infra-source"
    assert prod.pin == Pin("tag", "v0.9.0")


def test_pin_kinds(repo: RepoSnapshot) -> None:
    assert repo.cluster("lab").pin == Pin("branch", "main")
    assert repo.cluster("semver").pin == Pin("semver", ">=0.9.0")


def test_productive_accepts_string_and_bool_and_config_overrides(repo: RepoSnapshot) -> None:
    assert repo.cluster("prod").productive  # "true" as a string
    assert repo.cluster("stage").productive  # true as a bool
    assert not repo.cluster("lab").productive
    overridden = RepoSnapshot(build_reader(), {"stage": False, "lab": True})
    assert not overridden.cluster("stage").productive
    assert overridden.cluster("lab").productive


def test_problems_are_reported_not_raised(repo: RepoSnapshot) -> None:
    assert "not valid YAML" in repo.cluster("broken").problem
    assert repo.cluster("broken").backref is None
    nosource = repo.cluster("nosource")
    assert nosource.backref is None and "infra-source" in nosource.problem


def test_versions_are_semver_tags_in_semver_order(repo: RepoSnapshot) -> None:
    # v0.10.0 sorts after v0.9.0 (a string sort would not); `latest` is not a version.
    assert [v.tag for v in repo.versions] == ["v0.2.0", "v0.9.0", "v0.10.0"]
    assert repo.latest.tag == "v0.10.0"
    assert repo.version("0.9.0").tag == "v0.9.0"
    assert repo.version("v0.9.0").changelog.entries == (("Added", "cert-manager"), ("Added", "external-secrets"))
    assert repo.version("nope") is None


def test_prerelease_tags_sort_before_their_release() -> None:
    from commands.repo import parse_version

    assert parse_version("v1.0.0-rc.1") < parse_version("v1.0.0")
    assert parse_version("v0.10.0") > parse_version("v0.9.0")
    assert parse_version("latest") is None


def test_apps_and_their_values(repo: RepoSnapshot) -> None:
    apps = repo.cluster("prod").apps
    assert [(a.name, a.values_file) for a in apps] == [
        ("podinfo", "clusters/prod/apps/values/podinfo.yaml"),
        ("redis", None),
    ]


def test_components_per_version(repo: RepoSnapshot) -> None:
    at_02 = repo.components(repo.version("v0.2.0"))
    at_10 = repo.components(repo.version("v0.10.0"))
    assert [(c.name, c.chart_version) for c in at_02] == [("ingress-nginx", "4.10.0")]
    assert [(c.name, c.chart_version) for c in at_10] == [("cert-manager", "1.14.0"), ("ingress-nginx", "4.11.3")]


def test_pin_history_newest_first(repo: RepoSnapshot) -> None:
    pins = [pin.value for _, pin in repo.pin_history(repo.cluster("prod"))]
    assert pins == ["v0.9.0", "v0.10.0", "v0.9.0", "v0.2.0"]


def test_changelog_sections_and_wrapped_entries() -> None:
    sections = parse_changelog(CHANGELOG)
    assert list(sections) == ["unreleased", "0.10.0", "0.9.0", "0.2.0"]
    assert sections["0.10.0"].date == "2026-05-01"
    assert sections["0.10.0"].headline == "nginx 4.11 with a long entry that wraps onto a second line"
    assert sections["unreleased"].entries == (("Added", "something new"),)
