"""fluxbot's tables, declared once for SQLite and PostgreSQL (SQLAlchemy Core).

The migrations in `bot/store/migrations/` create and change these; a test holds the migrated
database against this declaration on both backends.
"""
from __future__ import annotations

from sqlalchemy import Column, Float, Index, Integer, MetaData, PrimaryKeyConstraint, Table, Text, text

metadata = MetaData()


def _id() -> Column:
    return Column("id", Integer, primary_key=True, autoincrement=True)


def _flag(name: str) -> Column:
    return Column(name, Integer, nullable=False, server_default="0")


def _text(name: str, default: str | None = None, nullable: bool = False) -> Column:
    return Column(name, Text, nullable=nullable, server_default=text(f"'{default}'") if default is not None else None)


local_prs = Table(
    "local_prs", metadata,
    Column("number", Integer, primary_key=True, autoincrement=True),
    *(_text(n) for n in ("title", "body", "state", "author", "cluster", "kind", "branch", "head", "labels",
                         "created", "updated")),
    _text("merge_commit", nullable=True),
    sqlite_autoincrement=True,
)
# one open change per cluster, enforced by the database as well as by the planner (and across replicas)
Index("one_open_pr_per_cluster", local_prs.c.cluster, unique=True,
      sqlite_where=text("state = 'open'"), postgresql_where=text("state = 'open'"))

# every webhook or chat delivery seen, so a retry or redelivery never repeats work, whichever replica gets it
deliveries = Table(
    "deliveries", metadata,
    _text("source"), _text("id"), _text("at"),
    PrimaryKeyConstraint("source", "id"),
)

confirmations = Table(
    "confirmations", metadata,
    Column("id", Text, primary_key=True),
    *(_text(n) for n in ("user", "channel", "thread_ts", "text")),
    Column("created", Float, nullable=False), Column("expires", Float, nullable=False),
    _text("state", "pending"),
)

# the chat thread of the request that opened a PR: later updates about the PR go there
threads = Table(
    "threads", metadata,
    _text("forge"), Column("number", Integer, nullable=False),
    *(_text(n) for n in ("channel", "thread_ts", "requester", "created")),
    _flag("settled"),  # its PR merged or closed (and the thread was told): left out of catch-up
    PrimaryKeyConstraint("forge", "number"),
)

# one change gate per PR, for its current head commit; approval is for that exact commit
gates = Table(
    "gates", metadata,
    _text("forge"), Column("number", Integer, nullable=False),
    *(_text(n) for n in ("head", "state", "description", "clusters", "kind", "requester", "author")),
    _text("request_channel", nullable=True), _text("request_ts", nullable=True),
    Column("created", Float, nullable=False), Column("expires", Float, nullable=False),
    _text("decided_by", nullable=True),
    _text("base", ""),  # the base branch the gate was judged against
    _flag("reported"),  # the forge took the gate's status
    PrimaryKeyConstraint("forge", "number"),
)

# what fluxbot was asked for, recorded BEFORE its PR is opened (GitHub sends `opened` while the create
# call is in flight): the gate finds who asked by the head branch and the exact commit pushed
intents = Table(
    "intents", metadata,
    *(_text(n) for n in ("forge", "branch", "sha", "requester", "cluster", "kind", "channel", "thread_ts", "created")),
    Column("at", Float, nullable=False, server_default="0"),  # unix time: the newest intent of a branch
    Column("request_id", Integer, nullable=False, server_default="0"),  # the journalled request that pushed it
    PrimaryKeyConstraint("forge", "branch", "sha"),
)

# the forge accounts that opened or pushed to a PR (four eyes on hand-made PRs)
pr_people = Table(
    "pr_people", metadata,
    _text("forge"), Column("number", Integer, nullable=False), _text("login"),
    PrimaryKeyConstraint("forge", "number", "login"),
)

freezes = Table(
    "freezes", metadata,
    Column("target", Text, primary_key=True), _text("reason"), _text("by"), _text("at"),
)

# the journal of chat requests, and the work queue: a request is claimed by pushing `next_try` past
# now (its lease); one whose replica died is claimed again once the lease has run out
requests = Table(
    "requests", metadata,
    _id(),
    *(_text(n) for n in ("user", "text", "channel", "thread_ts", "groups")),
    Column("confirmed", Integer, nullable=False),
    _text("state"), _text("created"),
    _flag("attempts"),
    _flag("notified"),  # the user was told it waits for the forge / git host
    Column("next_try", Float, nullable=False, server_default="0"),  # unix time: retries back off; the lease
    _text("owner", ""),  # the replica that claimed it last (for operators; the lease is `next_try`)
    sqlite_autoincrement=True,
)

# reconciles being followed after a merge; `following` ones resume after a restart (on the leader)
follows = Table(
    "follows", metadata,
    _id(),
    *(_text(n) for n in ("cluster", "expected", "tag", "source", "kustomization", "channel", "thread_ts")),
    Column("started", Float, nullable=False),
    _flag("requested"),  # 1: the source was asked to reconcile, 2: the Kustomization too
    _text("state", "following"),
    _text("merge", ""),  # the merge commit the owner Kustomization must apply
    _text("running", ""),  # the revision Flux had applied when the follow began
    _text("reported", ""),  # a verdict already posted (failed, suspended) while it goes on
    sqlite_autoincrement=True,
)

# chat posts not yet taken by Slack, in order: an answer is rendered once, then every message of it
# is delivered exactly once (a retry resumes at the first one missing, it never re-runs the request)
outbox = Table(
    "outbox", metadata,
    _id(),
    Column("request_id", Integer, nullable=False, server_default="0"),
    _text("channel"), _text("thread_ts", nullable=True),
    _text("payload"),  # JSON: blocks, text
    _text("posted_ts", nullable=True),  # set once Slack took it
    _flag("attempts"),
    Column("next_try", Float, nullable=False, server_default="0"),
    _text("state", "pending"),  # pending | sending | posted | abandoned
    _text("on_posted", ""),  # JSON: what to record once posted (a gate card's ts)
    _text("created", ""),  # when it was queued: retention deletes delivered posts after `requests_days`
    sqlite_autoincrement=True,
)

audit = Table(
    "audit", metadata,
    _id(),
    *(_text(n) for n in ("at", "user", "command", "outcome", "detail")),
    _text("clusters", ""),  # the clusters the request touched, comma-separated
    sqlite_autoincrement=True,
)

# leader leases: the work that must run once (follows, gate sweeps, journal retries) runs on the
# replica holding `leader`; `token` grows with every new holder (a fencing token)
leases = Table(
    "leases", metadata,
    Column("name", Text, primary_key=True), _text("holder"),
    Column("token", Integer, nullable=False), Column("expires", Float, nullable=False),
)
