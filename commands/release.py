"""`release <version>`: a PR that moves the Unreleased changelog entries under a new version.

When that PR merges, fluxbot tags the merge commit (`bot/` does that on merge).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from commands.args import check_name
from commands.changelog import looks_semantic_release, normalise
from commands.context import CommandSpec, Context
from commands.model import ChangePlan, CommandError, FileEdit
from commands.repo import parse_version

_UNRELEASED_HEADING = re.compile(r"^##\s+\[?unreleased\]?[^\r\n]*", re.I | re.M)
_UNRELEASED_LINK = re.compile(r"^\[unreleased\]:\s*(?P<base>\S+?)/compare/(?P<old>\S+?)\.\.\.HEAD[ \t]*$", re.I | re.M)


@dataclass(frozen=True)
class Release:
    version: str


def parse(words: list[str]) -> Release:
    if len(words) != 1:
        raise SPEC.usage_error("release takes one version")
    return Release(check_name(words[0], "version"))


def release_branch(tag: str) -> str:
    return f"fluxbot/release-{tag}"


def tag_of_release_branch(branch: str) -> str | None:
    """The tag a merged release branch asks for (`fluxbot/release-v0.5.0` -> `v0.5.0`)."""
    prefix = "fluxbot/release-"
    return branch[len(prefix):] if branch.startswith(prefix) and parse_version(branch[len(prefix):]) else None


def run(cmd: Release, ctx: Context) -> tuple[ChangePlan, ...]:
    repo = ctx.repo
    wanted = parse_version(cmd.version)
    if wanted is None:
        raise CommandError(f"`{cmd.version}` is not a semantic version", "versions look like `v1.2.3`")
    latest = repo.latest
    changelog = repo.layout.changelog
    if repo.layout.changelog_style == "semantic-release":
        raise CommandError(f"semantic-release writes {changelog} and tags releases itself; fluxbot's `release` "
                           "moves a Keep a Changelog `Unreleased` section", "release with semantic-release "
                           "(`layout.changelog_style` is `semantic-release`)")
    bare = repo.layout.tag_version(latest.tag) if latest is not None else None
    tag = repo.layout.tag_for(("" if bare is not None and not bare.startswith("v") else "v") + str(wanted))
    if latest is not None and wanted <= parse_version(latest.tag):
        raise CommandError(f"`{tag}` is not newer than the latest release `{latest.tag}`", "pick a greater version")
    _require_green(ctx)
    before = repo.reader.read(repo.head, changelog)
    if before is None:
        raise CommandError(f"there is no {changelog} to release from",
                           "set `layout.changelog` to the changelog file, or add one with an `## [Unreleased]` section")
    unreleased = repo.changelog.get("unreleased")
    if unreleased is None or not unreleased.entries:
        semantic = unreleased is None and looks_semantic_release(before.decode("utf-8", "replace"))
        raise CommandError(f"the `Unreleased` section of {changelog} is " + ("missing" if unreleased is None else "empty"),
                           "it looks written by semantic-release: set `layout.changelog_style: semantic-release`"
                           if semantic else "add what changed there first")
    assert before is not None  # the changelog had an Unreleased section
    after = _move_unreleased(before.decode("utf-8"), str(wanted), tag, latest.tag if latest else "", ctx.today)
    open_release = ctx.open_change_for("")
    if open_release is not None:
        raise CommandError(f"a release is already open: PR #{open_release.number} {open_release.title} ({open_release.url})",
                           "merge or close it first")
    entries = "\n".join(f"- {c + ': ' if c else ''}{t}" for c, t in unreleased.entries)
    return (ChangePlan(
        kind="release", cluster="", branch=release_branch(tag), title=f"Release {tag}",
        body=f"## Release `{tag}`\n\n{entries}\n\n- Requested by: {ctx.requester}\n\n"
             f"Merging tags the merge commit as `{tag}`. No cluster changes until it is promoted.\n",
        commit_message=f"docs(changelog): release {tag}\n\nRequested-by: {ctx.requester}\n",
        edits=(FileEdit(changelog, before, after.encode("utf-8")),), labels=("fluxbot", "release"),
        productive=False, to_version=tag,
    ),)


def _require_green(ctx: Context) -> None:
    """With the switch on, the test cluster (tracking main) must be Ready on the cluster itself."""
    test = ctx.release_requires_green
    if not test:
        return
    live = ctx.live(test)
    if live is None or "error" in live:
        reason = (live or {}).get("error", f"fluxbot has no connection to `{test}`")
        raise CommandError(f"cannot confirm that `{test}` reconciles main cleanly: {reason}",
                           "releases wait for a green test cluster (`release.require_green_cluster`)")
    if live.get("missing"):
        raise CommandError(f"`{test}` has no infrastructure Kustomization on the cluster",
                           "releases wait for a green test cluster (`release.require_green_cluster`)")
    # Green means: the test cluster applied what is being released (main's head), not just Ready.
    cluster = ctx.repo.cluster(test)
    pin = cluster.pin if cluster is not None else None
    if pin is None or pin.kind != "branch":
        raise CommandError(f"`{test}` does not track a branch (pin: {pin or 'unknown'}), so it cannot show that "
                           "what is released works", "point `release.require_green_cluster` at the cluster tracking main")
    expected = f"{pin.value}@sha1:{ctx.repo.head}"
    if live["applied"] != expected:
        raise CommandError(f"`{test}` has not applied `{expected}` yet (applied: {live['applied'] or 'nothing'})",
                           "wait for Flux to reconcile main there (`reconcile " + test + "` asks it now)")
    if not live["current"] or live["problems"]:
        raise CommandError(f"`{test}` is not green: {live['reason'] or 'not Ready'} {live['message']}".strip()
                           + (f"; failing: {', '.join(p.split(':')[0] for p in live['problems'])}"
                              if live["problems"] else ""),
                           "fix main on the test cluster first; releases wait for it")


def _move_unreleased(text: str, version: str, tag: str, previous_tag: str, today: str) -> str:
    newline = "\r\n" if "\r\n" in text else "\n"
    heading = _UNRELEASED_HEADING.search(text)
    assert heading is not None
    dated = f" - {today}" if today else ""
    text = text[: heading.end()] + f"{newline}{newline}## [{version}]{dated}" + text[heading.end():]
    link = _UNRELEASED_LINK.search(text)
    if link is not None:
        base = link["base"]
        old = previous_tag or link["old"]
        lines = f"[unreleased]: {base}/compare/{tag}...HEAD{newline}[{normalise(version)}]: {base}/compare/{old}...{tag}"
        text = text[: link.start()] + lines + text[link.end():]
    return text


SPEC = CommandSpec(
    verb="release",
    usage="release <version>",
    summary="Open a PR that releases the Unreleased changelog entries; merging it tags the merge commit.",
    parse=parse,
    run=run,
    examples=("release v0.5.0",),
    action="release",
    proposes=True,
)
