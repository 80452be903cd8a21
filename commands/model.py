"""Domain objects shared by every command: clusters, pins, versions, plans and messages.

Everything here is plain data. Adapters in `bot/` turn a `ChangePlan` into a branch and a pull
request and render a `Message` for Slack or a terminal.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Union

PinKind = Literal["tag", "branch", "semver", "commit"]
Tone = Literal["info", "success", "warning", "error"]


class CommandError(Exception):
    """A request fluxbot refuses: `what` went wrong and `hint` says what would work."""

    tone: Tone = "error"

    def __init__(self, what: str, hint: str = "", details: tuple[str, ...] = ()) -> None:
        super().__init__(what)
        self.what = what
        self.hint = hint
        self.details = details  # one line per item, when a request names several (clusters)


class AlreadyOpen(CommandError):
    """The very change asked for is already open: a repeat, answered with the existing PR."""

    tone: Tone = "info"

    def __init__(self, what: str, hint: str = "", pr: "PullRequest | None" = None) -> None:
        super().__init__(what, hint)
        self.pr = pr  # the open PR: a re-run of the request that opened it answers with it


@dataclass(frozen=True)
class Pin:
    """What a cluster's infrastructure back-reference follows (`spec.ref.<kind>`)."""

    kind: PinKind
    value: str

    def __str__(self) -> str:
        return self.value if self.kind == "tag" else f"{self.kind} {self.value}"


@dataclass(frozen=True)
class BackReference:
    """The Flux GitRepository a cluster's infrastructure Kustomization takes as source."""

    path: str  # repo-relative file holding the GitRepository
    document: int  # index of the YAML document in that file
    name: str
    pin: Pin | None


@dataclass(frozen=True)
class App:
    """An app the cluster deploys, with the values patch that customises it, if any."""

    name: str
    resource: str
    values_file: str | None = None


@dataclass(frozen=True)
class Cluster:
    name: str
    backref: BackReference | None
    productive: bool
    variables: dict[str, object] = field(default_factory=dict, compare=False, hash=False)
    apps: tuple[App, ...] = ()
    problem: str = ""  # why the back-reference could not be found, if it could not
    kustomization: str = ""  # name of the infrastructure Kustomization
    # Why `productive` is what it is when the repo does not say it plainly: unknown counts as
    # productive (fail closed), and the config may opt a cluster out.
    productive_source: str = ""
    path: str = ""  # its directory (`clusters/<name>`, deeper when the layout nests clusters)

    @property
    def directory(self) -> str:
        return self.path or f"clusters/{self.name}"

    @property
    def pin(self) -> Pin | None:
        return self.backref.pin if self.backref else None

    @property
    def productive_text(self) -> str:
        """`yes`, `no`, or `unknown (treated as productive): <why>`; with the config key when it decided."""
        if self.productive_source.startswith("unknown"):
            return self.productive_source
        word = "yes" if self.productive else "no"
        return f"{word} ({self.productive_source})" if self.productive_source else word


@dataclass(frozen=True)
class ChangelogSection:
    version: str
    date: str
    entries: tuple[tuple[str, str], ...]  # (category, entry text), in file order

    @property
    def headline(self) -> str:
        return self.entries[0][1] if self.entries else ""


@dataclass(frozen=True)
class Version:
    """An infrastructure release: a semver git tag and its changelog section."""

    tag: str
    commit: str
    changelog: ChangelogSection | None = None
    date: str = ""  # ISO day of the release: the tagger date of an annotated tag, else the commit date


@dataclass(frozen=True)
class Component:
    """A HelmRelease of the infrastructure at some version."""

    name: str
    namespace: str
    chart: str
    chart_version: str
    path: str


@dataclass(frozen=True)
class PullRequest:
    """A change fluxbot opened, as any forge reports it."""

    number: int
    title: str
    url: str
    branch: str
    cluster: str
    kind: str
    state: str = "open"
    author: str = ""
    created: str = ""
    head: str = ""  # head commit
    merge_commit: str = ""
    opened_by: str = ""  # the forge account that opened it (a bot for fluxbot's own PRs)


@dataclass(frozen=True)
class ScalarEdit:
    """The one value a FileEdit changes, so it can be rebuilt if the file moved on meanwhile."""

    document: int
    key_path: tuple[str, ...]
    old: str
    new: str


@dataclass(frozen=True)
class FileEdit:
    """The whole new content of one file, with the content it was planned against."""

    path: str
    before: bytes | None  # None: the file is new
    after: bytes
    scalar: ScalarEdit | None = None
    delete: bool = False  # the file is removed


@dataclass(frozen=True)
class Link:
    label: str
    url: str


@dataclass(frozen=True)
class Message:
    """A reply, rendered as Block Kit for Slack and as plain text for the shell."""

    title: str
    lines: tuple[str, ...] = ()
    fields: tuple[tuple[str, str], ...] = ()
    table: tuple[tuple[str, ...], ...] = ()  # first row is the header
    links: tuple[Link, ...] = ()
    context: str = ""
    tone: Tone = "info"


@dataclass(frozen=True)
class ChangePlan:
    """Everything needed to open one pull request; made without touching git or a forge."""

    kind: str  # "promotion", "rollback", ...
    cluster: str
    branch: str
    title: str
    body: str
    commit_message: str
    edits: tuple[FileEdit, ...]
    labels: tuple[str, ...]
    productive: bool
    from_version: str = ""
    to_version: str = ""
    notes: tuple[str, ...] = ()  # what the requester should know (copied files, what prune deletes)


@dataclass(frozen=True)
class PrAction:
    """A request to act on an existing pull request (`pr merge 3`)."""

    action: Literal["merge", "close"]
    number: int


@dataclass(frozen=True)
class AuditEntry:
    at: str
    user: str
    command: str
    outcome: str
    clusters: tuple[str, ...] = ()  # the clusters the request touched


@dataclass(frozen=True)
class FreezeAction:
    """Freeze or unfreeze a cluster (or `all`); the store keeps it."""

    action: Literal["freeze", "unfreeze"]
    target: str
    reason: str = ""


@dataclass(frozen=True)
class ReconcileAction:
    """Ask Flux on the cluster to reconcile now."""

    cluster: str


Outcome = Union[Message, tuple[ChangePlan, ...], PrAction, FreezeAction, ReconcileAction]


def person(user: str) -> str:
    """A user in a Message: a chat user ID as a reference a renderer shows by name (`<@U…>`), else as is."""
    return f"<@{user}>" if user[:1] in "UW" and user.replace("_", "").isalnum() and user.isupper() else user
