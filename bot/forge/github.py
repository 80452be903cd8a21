"""GitHub (and GitHub Enterprise) as the forge, through PyGithub.

Branches are pushed by the git workspace with the same credentials (never written into a URL);
this module opens, lists, merges and closes the pull requests, and turns every GitHub failure
into a sentence the user can act on.
"""
from __future__ import annotations

import logging
import re
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Iterator

import requests
from github import Auth, Github, GithubException, RateLimitExceededException
from github.PullRequest import PullRequest as GhPull
from github.Repository import Repository
from urllib3.util.retry import Retry

from bot.forge.base import ForgeError, ForgeUnavailable
from bot.git.workspace import Workspace
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
}


def git_url_for(base_url: str, repository: str) -> str:
    """The HTTPS clone URL that belongs to an API base URL (github.com or Enterprise)."""
    if "api.github.com" in base_url:
        return f"https://github.com/{repository}.git"
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
    ) -> None:
        self.repository = repository
        self._auth = auth
        self.base_url = base_url
        self.workspace = workspace
        self.reviewers_team = reviewers_team
        # Bounded retries on gateway errors only: a rate limit is reported with its reset time
        # instead of being slept through, since a chat user is waiting.
        retry = Retry(total=2, connect=2, read=0, status=2, backoff_factor=0.3,
                      status_forcelist=(502, 503, 504), raise_on_status=False)
        self.client = Github(auth=auth, base_url=base_url, timeout=timeout, retry=retry,
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

    def changed_files(self, number: int) -> list[str]:
        with self._errors("read", f"PR #{number}"):
            return [f.filename for f in self.repo.get_pull(number).get_files()]

    def set_status(self, sha: str, state: str, description: str, context: str) -> None:
        """A commit status on `sha` (what branch protection can require)."""
        with self._errors("status"):
            self.repo.get_commit(sha).create_status(state=state, description=description[:140], context=context)

    # writing ----------------------------------------------------------------------------------

    def create(self, plan: ChangePlan, head: str, requester: str) -> PullRequest:
        with self._errors("open"):
            pull = self.repo.create_pull(base=self.workspace.default_branch, head=plan.branch,
                                         title=plan.title, body=plan.body)
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

    def merge(self, number: int, requester: str) -> PullRequest:
        with self._errors("merge", f"PR #{number}"):
            pull = self.repo.get_pull(number)
            pull.merge(merge_method="merge", commit_title=f"Merge fluxbot PR #{number}: {pull.title}")
            return self._model(self.repo.get_pull(number))

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
        return pull.head.ref.startswith("fluxbot/") or any(l.name == "fluxbot" for l in pull.labels)

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
            state="merged" if pull.merged else pull.state,
            author=requested[1] if requested else pull.user.login,
            created=pull.created_at.isoformat() if pull.created_at else "",
            head=pull.head.sha,
            merge_commit=(pull.merge_commit_sha or "") if pull.merged else "",
            opened_by=pull.user.login,
        )

    @contextmanager
    def _errors(self, action: str, subject: str = "") -> Iterator[None]:
        """Translate PyGithub and network failures into a ForgeError the user can act on."""
        try:
            yield
        except RateLimitExceededException as exc:
            raise ForgeUnavailable(f"GitHub's rate limit is used up; {_reset(exc.headers)}") from None
        except GithubException as exc:
            unavailable = exc.status >= 500 or _rate_limited(exc)
            raise (ForgeUnavailable if unavailable else ForgeError)(self._explain(exc, action, subject)) from None
        except requests.RequestException as exc:
            raise ForgeUnavailable(f"GitHub is unreachable at {self.base_url} ({exc.__class__.__name__})") from None

    def _explain(self, exc: GithubException, action: str, subject: str) -> str:
        message = (exc.data or {}).get("message", "") if isinstance(exc.data, dict) else ""
        if exc.status == 401:
            return "GitHub rejected fluxbot's credentials (401 Bad credentials): check the token or the GitHub App key"
        if _rate_limited(exc):
            return f"GitHub's rate limit is used up; {_reset(exc.headers)}"
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
        if exc.status == 405:
            return f"GitHub cannot do that to {subject or 'the pull request'} (405 {message})"
        if exc.status >= 500:
            return f"GitHub is failing ({exc.status} {message or 'server error'})".strip()
        return f"GitHub answered {exc.status} {message}".strip()


def _rate_limited(exc: GithubException) -> bool:
    """A 403 that is GitHub's primary rate limit (not a permission problem)."""
    return exc.status == 403 and (exc.headers or {}).get("x-ratelimit-remaining") == "0"


def _reset(headers: dict[str, str] | None) -> str:
    reset = (headers or {}).get("x-ratelimit-reset")
    if not reset or not reset.isdigit():
        return "try again in a few minutes"
    at = datetime.fromtimestamp(int(reset), timezone.utc)
    minutes = max(0, round((at - datetime.now(timezone.utc)).total_seconds() / 60))
    return f"it resets at {at:%H:%M} UTC (in {minutes} min)"
