"""GitHub (and GitHub Enterprise) as the forge, through PyGithub.

Branches are pushed by the git workspace with the same credentials (never written into a URL);
this module opens, lists, merges and closes the pull requests, and turns every GitHub failure
into a sentence the user can act on.
"""
from __future__ import annotations

import logging
import re
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterator

import requests
from github import Auth, Github, GithubException, RateLimitExceededException
from github.PullRequest import PullRequest as GhPull
from github.Repository import Repository
from urllib3.util.retry import Retry

from bot.forge.base import ForgeError, ForgeUnavailable
from bot.github.vocabulary import (DEFAULT_RETRY_AFTER, MAX_PER_PAGE, MAX_PR_FILES, MERGE_METHOD_SETTINGS,
                                   MERGE_METHODS, RATE_LIMIT_STATUSES, STATUS_DESCRIPTION_MAX)
from bot.git.workspace import Workspace
from bot.metrics import API_ERRORS
from commands.model import ChangePlan, PullRequest

log = logging.getLogger(__name__)

_REQUESTED_BY = re.compile(r"^- Requested by: (.+)$", re.M)
_CLUSTER_BRANCH = re.compile(r"^fluxbot/[a-z]+-(?P<cluster>.+)-v?\d+\.\d+\.\d+.*$")

# What each call needs, for 403 answers (fine-grained token / GitHub App permission names).
_NEEDS = {
    "read": "`metadata: read` and `pull_requests: read`",
    "open": "`contents: write` and `pull_requests: write`",
    "label": "`issues: write` (labels) and `pull_requests: write`",
    "merge": "`contents: write` and `pull_requests: write`",
    "status": "`statuses: write`",
    "check": "`checks: write` (a GitHub App)",
    "tag": "`contents: write`",
}


class RateLimited(ForgeUnavailable):
    """GitHub's primary or secondary rate limit (403 or 429): try again after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class PullFacts:
    """What the gate reads of a PR, straight from GitHub (labels are display only and not here)."""

    number: int
    title: str
    url: str
    state: str  # open | closed | merged
    author: str  # the login that opened it
    head_ref: str
    head_sha: str
    base_ref: str
    changed_files: int  # as GitHub counts them (the files list stops at MAX_PR_FILES)
    merge_commit: str = ""


@dataclass(frozen=True)
class ChangedFiles:
    """Every path a PR touches: new names and, for renames, the old ones; `capped` when GitHub's
    list stopped at its limit, so the rest is unknown."""

    paths: tuple[str, ...]
    capped: bool = False


def git_url_for(base_url: str, repository: str) -> str:
    """The HTTPS clone URL that belongs to an API base URL (github.com, Enterprise Server, or
    Enterprise Cloud with data residency, whose API is `https://api.SUB.ghe.com`)."""
    if "api.github.com" in base_url:
        return f"https://github.com/{repository}.git"
    if m := re.match(r"^(https?://)api\.([^/]+\.ghe\.com)/?$", base_url.rstrip("/")):
        return f"{m[1]}{m[2]}/{repository}.git"
    host = re.sub(r"/api/v3/?$", "", base_url.rstrip("/"))
    return f"{host}/{repository}.git"


class GitHubForge:
    name = "github"

    def __init__(
        self,
        repository: str,
        auth: Auth.Auth,
        workspace: Workspace,
        base_url: str = "https://api.github.com",
        reviewers_team: str = "",
        seconds_between_writes: float | None = 1.0,
        timeout: int = 15,
        merge_method: str = "",
    ) -> None:
        self.repository = repository
        self.merge_method = merge_method  # "" = the first method the repository allows
        self.is_app = isinstance(auth, Auth.AppInstallationAuth)
        self._auth = auth
        self.base_url = base_url
        self.workspace = workspace
        self.reviewers_team = reviewers_team
        # Bounded retries on gateway errors only: a rate limit is reported with its reset time
        # instead of being slept through, since a chat user is waiting.
        retry = Retry(total=2, connect=2, read=0, status=2, backoff_factor=0.3,
                      status_forcelist=(502, 503, 504), raise_on_status=False)
        self.client = Github(auth=auth, base_url=base_url, timeout=timeout, retry=retry, per_page=MAX_PER_PAGE,
                             seconds_between_requests=None, seconds_between_writes=seconds_between_writes)
        self._repo: Repository | None = None

    def token(self) -> str | None:
        """The current token (an installation token is refreshed by PyGithub when it expires)."""
        return getattr(self._auth, "token", None)

    @property
    def repo(self) -> Repository:
        if self._repo is None:
            with self._errors("read"):
                self._repo = self.client.get_repo(self.repository)
        return self._repo

    # reading ----------------------------------------------------------------------------------

    def open_prs(self) -> list[PullRequest]:
        with self._errors("read"):
            pulls = list(self.repo.get_pulls(state="open"))
        return [self._model(p) for p in pulls if self._is_fluxbot(p)]

    def find_open(self, branch: str) -> PullRequest | None:
        owner = self.repository.split("/")[0]
        with self._errors("read"):
            pulls = list(self.repo.get_pulls(state="open", head=f"{owner}:{branch}"))
        return self._model(pulls[0]) if pulls else None

    def get(self, number: int) -> PullRequest:
        with self._errors("read", f"PR #{number}"):
            return self._model(self.repo.get_pull(number))

    def facts(self, number: int) -> PullFacts:
        """The PR as GitHub has it now (one GET)."""
        with self._errors("read", f"PR #{number}"):
            pull = self.repo.get_pull(number)
            return PullFacts(pull.number, pull.title, pull.html_url,
                             "merged" if pull.merged else pull.state, pull.user.login, pull.head.ref, pull.head.sha,
                             pull.base.ref, pull.changed_files or 0, pull.merge_commit_sha or "")

    def changed_files(self, number: int, count: int | None = None) -> ChangedFiles:
        """Every path the PR changes, renamed-from paths included; at GitHub's cap, `capped` and
        not listed (the rest is unknown, so the caller fails closed)."""
        with self._errors("read", f"PR #{number}"):
            if count is None:
                count = self.repo.get_pull(number).changed_files or 0
            if count >= MAX_PR_FILES:
                return ChangedFiles((), capped=True)
            paths: list[str] = []
            for f in self.repo.get_pull(number).get_files():
                paths.append(f.filename)
                if f.previous_filename:
                    paths.append(f.previous_filename)
            listed = len({f for f in paths})
        return ChangedFiles(tuple(dict.fromkeys(paths)), capped=listed >= MAX_PR_FILES)

    def set_status(self, sha: str, state: str, description: str, context: str) -> None:
        """A commit status on `sha` (what branch protection can require); one POST, no lookup first."""
        with self._errors("status"):
            self.client.requester.requestJsonAndCheck(
                "POST", f"{self.repo.url}/statuses/{sha}",
                input={"state": state, "description": description[:STATUS_DESCRIPTION_MAX], "context": context})

    def set_check(self, sha: str, state: str, description: str, name: str) -> None:
        """The gate as a check run (GitHub App only: no other App can write a run under its name)."""
        body: dict[str, Any] = {"name": name, "head_sha": sha,
                                "output": {"title": description[:STATUS_DESCRIPTION_MAX], "summary": description}}
        if state == "pending":
            body["status"] = "in_progress"
        else:
            body.update(status="completed", conclusion="success" if state == "success" else "failure")
        with self._errors("check"):
            self.client.requester.requestJsonAndCheck("POST", f"{self.repo.url}/check-runs", input=body)

    def merged_pulls_of(self, sha: str) -> list[int]:
        """Numbers of the merged PRs whose merge produced commit `sha` (GET /commits/{sha}/pulls)."""
        with self._errors("read"):
            _headers, data = self.client.requester.requestJsonAndCheck("GET", f"{self.repo.url}/commits/{sha}/pulls")
        return [int(p["number"]) for p in data or [] if p.get("merged_at") and p.get("merge_commit_sha") == sha]

    def tag(self, commit: str, name: str, message: str) -> None:
        """An annotated tag on GitHub itself (the mirror may not have fetched the merge commit yet)."""
        with self._errors("tag", f"tag {name}"):
            tag = self.repo.create_git_tag(name, message, commit, "commit")
            self.repo.create_git_ref(f"refs/tags/{name}", tag.sha)

    # writing ----------------------------------------------------------------------------------

    def create(self, plan: ChangePlan, head: str, requester: str) -> PullRequest:
        try:
            with self._errors("open"):
                pull = self.repo.create_pull(base=self.workspace.default_branch, head=plan.branch,
                                             title=plan.title, body=plan.body)
        except ForgeUnavailable:
            # The answer was lost (timeout, 5xx): GitHub may have opened the PR anyway. Find it by
            # its head before anything is deleted, or the PR would lose its branch.
            pull = self._open_pull_of(plan.branch)
            if pull is None:
                raise
        try:
            with self._errors("label"):
                pull.add_to_labels(*plan.labels)
        except ForgeError:
            # Labels carry the one-change-per-cluster lock: a PR without them must not stay open.
            self._close_quietly(pull)
            raise
        if self.reviewers_team:
            try:
                with self._errors("open"):
                    pull.create_review_request(team_reviewers=[self.reviewers_team])
            except ForgeError as error:
                log.warning("could not request reviewers", extra={"pr": pull.number, "reason": str(error)})
        return self._model(pull, labels=plan.labels)

    def _open_pull_of(self, branch: str) -> GhPull | None:
        owner = self.repository.split("/")[0]
        try:
            with self._errors("read"):
                pulls = list(self.repo.get_pulls(state="open", head=f"{owner}:{branch}"))
        except ForgeError:
            return None
        return pulls[0] if pulls else None

    def merge(self, number: int, requester: str, sha: str = "") -> PullRequest:
        """Merge exactly `sha` (GitHub answers 409 when the head moved) with an allowed method."""
        with self._errors("merge", f"PR #{number}"):
            pull = self.repo.get_pull(number)
            method = self._merge_method()
            pull.merge(merge_method=method, commit_title=f"Merge fluxbot PR #{number}: {pull.title}",
                       sha=sha or pull.head.sha)
            return self._model(self.repo.get_pull(number))

    def _merge_method(self) -> str:
        """The configured method, else the first the repository allows (GET /repos: allow_*)."""
        if self.merge_method:
            return self.merge_method
        data = self.repo.raw_data
        return next((m for m in MERGE_METHODS if data.get(MERGE_METHOD_SETTINGS[m], True)), "merge")

    def disconnect(self) -> None:
        """Close the HTTP connections to GitHub (shutdown)."""
        self.client.close()

    def close(self, number: int, requester: str) -> PullRequest:
        with self._errors("open", f"PR #{number}"):
            pull = self.repo.get_pull(number)
            pull.edit(state="closed")
        self.workspace.delete_branch(pull.head.ref)
        return self._model(pull)

    def _close_quietly(self, pull: GhPull) -> None:
        try:
            pull.edit(state="closed")
        except (GithubException, requests.RequestException):
            log.warning("could not close a half-made PR", extra={"pr": pull.number})

    # mapping ----------------------------------------------------------------------------------

    @staticmethod
    def _is_fluxbot(pull: GhPull) -> bool:
        # Labels are display only (anyone who can triage can set them); the gate trusts neither.
        return pull.head.ref.startswith("fluxbot/")

    def _model(self, pull: GhPull, labels: tuple[str, ...] = ()) -> PullRequest:
        names = list(labels) or [label.name for label in pull.labels]
        cluster = next((n.split(":", 1)[1] for n in names if n.startswith("cluster:")), "")
        if not cluster and (m := _CLUSTER_BRANCH.match(pull.head.ref)):
            cluster = m["cluster"]
        kind = next((n for n in names if n in ("promotion", "rollback")), "change")
        requested = _REQUESTED_BY.search(pull.body or "")
        return PullRequest(
            number=pull.number,
            title=pull.title,
            url=pull.html_url,
            branch=pull.head.ref,
            cluster=cluster,
            kind=kind,
            # list answers are pull-request-simple, without `merged`: an open PR is not merged, and
            # asking PyGithub for `merged` would fetch each listed PR again
            state=pull.state if pull.state == "open" else "merged" if pull.merged else pull.state,
            author=requested[1] if requested else pull.user.login,
            created=pull.created_at.isoformat() if pull.created_at else "",
            head=pull.head.sha,
            merge_commit=(pull.merge_commit_sha or "") if pull.state != "open" and pull.merged else "",
            opened_by=pull.user.login,
        )

    @contextmanager
    def _errors(self, action: str, subject: str = "") -> Iterator[None]:
        """Translate PyGithub and network failures into a ForgeError the user can act on."""
        try:
            yield
        except GithubException as exc:
            if isinstance(exc, RateLimitExceededException) or _rate_limited(exc):
                API_ERRORS.labels("github", "rate_limited").inc()
                wait = retry_after(exc.headers)
                raise RateLimited(f"GitHub's rate limit is used up; {_reset(exc.headers, wait)}", wait) from None
            API_ERRORS.labels("github", str(exc.status)).inc()
            unavailable = exc.status >= 500
            raise (ForgeUnavailable if unavailable else ForgeError)(self._explain(exc, action, subject)) from None
        except requests.RequestException as exc:
            API_ERRORS.labels("github", "unreachable").inc()
            raise ForgeUnavailable(f"GitHub is unreachable at {self.base_url} ({exc.__class__.__name__})") from None

    def rate_limit(self) -> tuple[int, int] | None:
        """(remaining, limit) from GitHub's last answer; None before the first (never asks on its own)."""
        remaining, limit = self.client.requester.rate_limiting
        return None if limit < 0 else (remaining, limit)

    def _explain(self, exc: GithubException, action: str, subject: str) -> str:
        message = (exc.data or {}).get("message", "") if isinstance(exc.data, dict) else ""
        if exc.status == 401:
            return "GitHub rejected fluxbot's credentials (401 Bad credentials): check the token or the GitHub App key"
        if exc.status == 403:
            return f"GitHub refused (403 {message}): fluxbot's token needs {_NEEDS[action]} on {self.repository}"
        if exc.status == 404:
            what = subject or f"repository {self.repository}"
            return f"GitHub has no {what}, or fluxbot's token cannot see it (404)"
        if exc.status == 422:
            details = "; ".join(
                e.get("message") or f"{e.get('field', '')} {e.get('code', '')}".strip()
                for e in (exc.data or {}).get("errors", []) if isinstance(e, dict)
            )
            return f"GitHub rejected the request (422 {message}{': ' + details if details else ''})"
        if exc.status == 405 and action == "merge":
            return (f"GitHub will not merge {subject or 'the pull request'} (405 {message}): a required check is not"
                    " green, the merge method is not allowed here (set `forge.merge_method`), or the branch"
                    " requires the merge queue (add it to the queue on the PR page)")
        if exc.status == 409 and action == "merge":
            return (f"{subject or 'the pull request'} has new commits since it was shown (409 {message}):"
                    " look at them, get the new commit approved, and merge again")
        if exc.status == 405:
            return f"GitHub cannot do that to {subject or 'the pull request'} (405 {message})"
        if exc.status >= 500:
            return f"GitHub is failing ({exc.status} {message or 'server error'})".strip()
        return f"GitHub answered {exc.status} {message}".strip()


def _header(headers: dict[str, str] | None, name: str) -> str:
    return next((str(v) for k, v in (headers or {}).items() if k.lower() == name), "")


def _rate_limited(exc: GithubException) -> bool:
    """A 403 or 429 that is a primary or secondary rate limit (not a permission problem)."""
    if exc.status not in RATE_LIMIT_STATUSES:
        return False
    message = str((exc.data or {}).get("message", "") if isinstance(exc.data, dict) else "").lower()
    return (exc.status == 429 or _header(exc.headers, "x-ratelimit-remaining") == "0"
            or bool(_header(exc.headers, "retry-after")) or "rate limit" in message)


def retry_after(headers: dict[str, str] | None) -> float:
    """Seconds to wait: `retry-after`, else until `x-ratelimit-reset` when none remain, else 60."""
    after = _header(headers, "retry-after")
    if after.isdigit():
        return float(after)
    reset = _header(headers, "x-ratelimit-reset")
    if _header(headers, "x-ratelimit-remaining") == "0" and reset.isdigit():
        return max(float(DEFAULT_RETRY_AFTER) / 60, int(reset) - datetime.now(timezone.utc).timestamp())
    return float(DEFAULT_RETRY_AFTER)


def _reset(headers: dict[str, str] | None, wait: float) -> str:
    reset = _header(headers, "x-ratelimit-reset")
    if not _header(headers, "retry-after") and reset.isdigit():
        at = datetime.fromtimestamp(int(reset), timezone.utc)
        minutes = max(0, round((at - datetime.now(timezone.utc)).total_seconds() / 60))
        return f"it resets at {at:%H:%M} UTC (in {minutes} min)"
    return f"GitHub asks to wait {round(wait)} s before trying again"
