"""A GitHub REST stand-in on 127.0.0.1 for the real PyGithub client, that behaves like GitHub.

It serves the endpoints fluxbot uses, shaped after GitHub's own examples (the pull request and
repository objects in ../shared/fixtures/payloads/github/, from octokit/webhooks) and held against
GitHub's REST description by tests/bot/test_github_standin.py. It keeps branches in a real bare
repository, checks the Authorization header, records every request, can be told to fail a route,
and, like GitHub:

- sends signed webhooks to the receiver at GitHub's moments: `pull_request.opened` while
  `POST /pulls` is still in flight (before labels exist), `labeled` per label, `synchronize` on a
  push to a PR's branch, `edited` on a retarget, `closed` on a merge, `status`, `check_run`,
  `push` and `merge_group` (https://docs.github.com/en/webhooks/webhook-events-and-payloads);
- lists `pull-request-simple` objects (no `merged`, `changed_files`...) with `per_page`, `page`
  and `Link` pagination (https://docs.github.com/en/rest/using-the-rest-api/using-pagination-in-the-rest-api);
- lists a PR's files with `status: renamed` + `previous_filename`, at most 3,000
  (https://docs.github.com/en/rest/pulls/pulls#list-pull-requests-files);
- enforces branch protection on merges: required statuses / check runs, the allowed merge
  methods (405), the head `sha` (409), the merge queue (405)
  (https://docs.github.com/en/rest/pulls/pulls#merge-a-pull-request);
- lets only a GitHub App write check runs (https://docs.github.com/en/rest/checks/runs).
"""
from __future__ import annotations

import copy
import hashlib
import hmac
import json
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlencode, urlparse

from bot.github import vocabulary as gh
from tests.standins.http import StandInServer, send_json

# Fields of `pull-request` that the list endpoint's `pull-request-simple` does not have.
# https://docs.github.com/en/rest/pulls/pulls#list-pull-requests (response schema)
FULL_PULL_ONLY = ("merged", "mergeable", "rebaseable", "mergeable_state", "merged_by", "comments", "review_comments",
                  "maintainer_can_modify", "commits", "additions", "deletions", "changed_files")
DROP = 0  # a failure "status" that carries out the request and then drops the connection unanswered


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Delivery:
    event: str
    payload: dict[str, Any]
    status: int


@dataclass
class _Failure:
    method: str
    pattern: re.Pattern[str]
    status: int
    body: dict[str, Any]
    headers: dict[str, str]
    times: int


# GitHub refuses a comment body over 65,536 characters with 422 Validation Failed, resource
# IssueComment, "body is too long (maximum is 65536 characters)" (the REST description has no
# maxLength; the answer is as reported in danger/danger#424 and telia-oss/github-pr-resource#259).
COMMENT_BODY_LIMIT = 65_536


def _too_long() -> tuple[int, Any, dict[str, str]]:
    return 422, {"message": "Validation Failed", "errors": [
        {"resource": "IssueComment", "code": "custom", "field": "body",
         "message": f"body is too long (maximum is {COMMENT_BODY_LIMIT} characters)"}],
        "documentation_url": "https://docs.github.com/rest/issues/comments#create-an-issue-comment"}, {}

@dataclass
class Protection:
    """Branch protection of the default branch (or a ruleset with the same rules)."""

    contexts: tuple[str, ...] = (gh.GATE_CONTEXT,)
    checks_from_app_only: bool = False  # required as a check run from fluxbot's App: statuses do not count
    merge_queue: bool = False


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


GIT_ENV = {"GIT_AUTHOR_NAME": "GitHub", "GIT_AUTHOR_EMAIL": "noreply@github.com", "GIT_COMMITTER_NAME": "GitHub",
           "GIT_COMMITTER_EMAIL": "noreply@github.com", "PATH": "/usr/local/bin:/usr/bin:/bin"}


@dataclass
class GitHubStandIn:
    owner: str
    name: str
    bare_repo: Path
    templates: dict[str, Any]  # {"pull_request": ..., "repository": ...} from the fixtures
    tokens: set[str] = field(default_factory=lambda: {"ghp_standin_token_0123456789"})
    # token -> the account it acts as (who `sender` is in the webhooks its writes cause)
    logins: dict[str, str] = field(default_factory=lambda: {"ghp_standin_token_0123456789": "fluxbot-token-user"})
    pulls: dict[int, dict[str, Any]] = field(default_factory=dict)
    comments: dict[int, list[str]] = field(default_factory=dict)
    statuses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    check_runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    reviewers: dict[int, list[str]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    installation_tokens: int = 0
    api_prefix: str = ""  # "/api/v3" to answer like GitHub Enterprise
    outage: int = 0  # while set, every API request is answered with this status (an incident)
    rate_limit: int = 5000  # the primary rate limit of a token (GitHub App installations start there too)
    rate_limit_used: int = 0  # requests counted against it; every answer says what is left
    merge_methods: set[str] = field(default_factory=lambda: {"merge", "squash", "rebase"})
    protection: Protection | None = None
    hook_url: str = ""  # where webhooks go (fluxbot's /github/webhook); "" = the receiver is down
    hook_secret: str = ""
    after_delivery: Callable[[], None] | None = None  # e.g. wait until fluxbot handled it (tests)

    def __post_init__(self) -> None:
        self._comment_at: dict[int, tuple[int, int]] = {}  # comment id -> (issue number, index in comments)
        self._failures: list[_Failure] = []
        self._lock = threading.RLock()
        self._outbox: list[tuple[str, dict[str, Any]]] = []
        self._waiting = 0
        self._groups = 0
        self.server = StandInServer(("127.0.0.1", 0), _handler(self))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> "GitHubStandIn":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def fail(self, method: str, path_regex: str, status: int, message: str = "", headers: dict[str, str] | None = None,
             times: int = 1, errors: list[dict[str, Any]] | None = None) -> None:
        """Answer the next `times` matching requests with an error like GitHub's (DROP: do it, answer nothing)."""
        body: dict[str, Any] = {"message": message or "error", "documentation_url": "https://docs.github.com/rest"}
        if errors:
            body["errors"] = errors
        self._failures.append(_Failure(method, re.compile(path_regex), status, body, headers or {}, times))

    # -- the git side ------------------------------------------------------------------------

    def git(self, *args: str) -> str:
        return subprocess.run(["git", *args], cwd=self.bare_repo, capture_output=True, text=True, check=True,
                              env=GIT_ENV).stdout.strip()

    def branches(self) -> list[str]:
        return self.git("for-each-ref", "--format=%(refname:strip=2)", "refs/heads").split()

    def fluxbot_branches(self) -> list[str]:
        return [b for b in self.branches() if b.startswith("fluxbot/")]

    def gate_states(self, sha: str) -> list[str]:
        return [s["state"] for s in self.statuses.get(sha, []) if s["context"] == gh.GATE_CONTEXT]

    def check_states(self, sha: str) -> list[str]:
        return [r["conclusion"] or r["status"] for r in self.check_runs.get(sha, []) if r["name"] == gh.GATE_CONTEXT]

    def open_pulls(self) -> list[dict[str, Any]]:
        return [p for p in self.pulls.values() if p["state"] == "open"]

    # -- what people do on GitHub (each sends the webhooks GitHub would) ----------------------

    def pushed(self, branch: str, pusher: str, before: str = "") -> None:
        """Someone pushed `branch` (with git, to bare_repo): `push`, and `synchronize` on its open PRs."""
        with self._lock:
            after = self.git("rev-parse", f"refs/heads/{branch}")
            for pr in self.open_pulls():
                if pr["head"]["ref"] == branch and pr["head"]["sha"] != after:
                    old = pr["head"]["sha"]
                    pr["head"]["sha"] = after
                    self._pull_event("synchronize", pr, pusher, before=old, after=after)
            self._push_event(f"refs/heads/{branch}", before or "0" * 40, after, pusher)
        self._flush()

    def push_commit(self, number: int, sha: str, pusher: str = "fluxbot-token-user") -> None:
        """New commits on a PR: move its head and send `synchronize`."""
        with self._lock:
            pr = self.pulls[number]
            old, pr["head"]["sha"] = pr["head"]["sha"], sha
            self._pull_event("synchronize", pr, pusher, before=old, after=sha)
        self._flush()

    def open_pull_by_hand(self, head: str, title: str, user: str, base: str = "main", body: str = "") -> dict[str, Any]:
        with self._lock:
            status, pull, _ = self._create_pull({"head": head, "base": base, "title": title, "body": body}, user)
        assert status == 201, pull
        self._flush()
        return copy.deepcopy(pull)

    def label(self, number: int, name: str, by: str) -> None:
        with self._lock:
            self._add_labels(number, [name], by)
        self._flush()

    def retarget(self, number: int, base: str, by: str) -> None:
        """Change a PR's base branch on the PR page (`edited` with `changes.base`)."""
        with self._lock:
            pr = self.pulls[number]
            old = pr["base"]["ref"]
            pr["base"] = {**pr["base"], "ref": base, "sha": self.git("rev-parse", f"refs/heads/{base}")}
            self._pull_event("edited", pr, by, changes={"base": {"ref": {"from": old}, "sha": {"from": ""}}})
        self._flush()

    def merge_on_page(self, number: int, by: str, bypass: bool = False, method: str = "merge") -> tuple[int, Any]:
        """The merge button; `bypass`: an admin (or ruleset bypass actor) merging past protection."""
        with self._lock:
            status, body, _ = self._merge(number, {"merge_method": method}, by, bypass)
        self._flush()
        return status, body

    def close_on_page(self, number: int, by: str) -> None:
        with self._lock:
            pr = self.pulls[number]
            pr.update(state="closed", closed_at=_now())
            self._pull_event("closed", pr, by)
        self._flush()

    def post_status(self, sha: str, state: str, context: str, by: str, description: str = "") -> None:
        with self._lock:
            self._create_status(sha, {"state": state, "context": context, "description": description}, by)
        self._flush()

    def queue(self, number: int) -> str:
        """Add a PR to the merge queue: a `gh-readonly-queue/...` commit and `merge_group` checks_requested."""
        with self._lock:
            pr = self.pulls[number]
            base = pr["base"]["ref"]
            head = f"refs/heads/{pr['head']['ref']}"
            self._groups += 1
            group = self.git("commit-tree", f"{head}^{{tree}}", "-p", f"refs/heads/{base}", "-p", head,
                             "-m", f"Merge pull request #{number} (merge group {self._groups})")
            ref = f"refs/heads/gh-readonly-queue/{base}/pr-{number}-{pr['head']['sha']}"
            self.git("update-ref", ref, group)
            self._event(gh.MERGE_GROUP, {"action": gh.CHECKS_REQUESTED, "merge_group": {
                "head_sha": group, "head_ref": ref, "base_sha": self.git("rev-parse", f"refs/heads/{base}"),
                "base_ref": f"refs/heads/{base}", "head_commit": {"id": group}}}, "github-merge-queue[bot]")
        self._flush()
        return group

    # -- objects shaped like GitHub's --------------------------------------------------------

    def _api(self, path: str) -> str:
        return f"{self.base_url}{self.api_prefix}/repos/{self.full_name}{path}"

    def repository(self) -> dict[str, Any]:
        repo = copy.deepcopy(self.templates["repository"])
        repo.update(
            name=self.name, full_name=self.full_name, default_branch="main", url=self._api(""),
            html_url=f"https://github.example/{self.full_name}", private=True,
            allow_merge_commit="merge" in self.merge_methods, allow_squash_merge="squash" in self.merge_methods,
            allow_rebase_merge="rebase" in self.merge_methods,
        )
        repo["owner"] = {**repo["owner"], "login": self.owner}
        return repo

    def _comment(self, comment_id: int) -> dict[str, Any]:
        """An `issue-comment` as the REST API returns it (the fields PyGithub reads)."""
        number, index = self._comment_at[comment_id]
        return {"id": comment_id, "node_id": f"IC_{comment_id}", "url": self._api(f"/issues/comments/{comment_id}"),
                "html_url": f"https://github.example/{self.full_name}/pull/{number}#issuecomment-{comment_id}",
                "issue_url": self._api(f"/issues/{number}"), "body": self.comments[number][index],
                "user": self._user("fluxbot[bot]"), "created_at": _now(), "updated_at": _now(),
                "author_association": "NONE"}

    def _user(self, login: str) -> dict[str, Any]:
        return {**self.templates["pull_request"]["user"], "login": login, "type": "Bot" if login.endswith("[bot]") else "User"}

    def _pull(self, number: int, title: str, body: str, head: str, sha: str, base: str, user: str) -> dict[str, Any]:
        pr = copy.deepcopy(self.templates["pull_request"])
        pr.update(
            url=self._api(f"/pulls/{number}"), id=1000 + number, number=number, state="open", title=title,
            body=body, html_url=f"https://github.example/{self.full_name}/pull/{number}",
            issue_url=self._api(f"/issues/{number}"), created_at=_now(), updated_at=_now(),
            closed_at=None, merged_at=None, merged=False, merge_commit_sha=None, labels=[], draft=False,
            requested_reviewers=[], requested_teams=[], assignees=[], assignee=None, milestone=None, merged_by=None,
        )
        pr["user"] = self._user(user)
        pr["head"] = {**pr["head"], "ref": head, "sha": sha, "label": f"{self.owner}:{head}", "repo": self.repository()}
        pr["base"] = {**pr["base"], "ref": base, "sha": self.git("rev-parse", f"refs/heads/{base}"),
                      "label": f"{self.owner}:{base}", "repo": self.repository()}
        return pr

    def _full(self, pr: dict[str, Any]) -> dict[str, Any]:
        """The `pull-request` object: counts computed from the diff, as GitHub does."""
        files = self._files(pr)
        return {**pr, "changed_files": len(files), "commits": 1,
                "additions": sum(f["additions"] for f in files), "deletions": sum(f["deletions"] for f in files)}

    @staticmethod
    def _simple(pr: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in pr.items() if k not in FULL_PULL_ONLY}

    def _files(self, pr: dict[str, Any]) -> list[dict[str, Any]]:
        out = self.git("diff", "--name-status", "-M", f"{pr['base']['sha']}...{pr['head']['sha']}")
        files = []
        for line in out.splitlines():
            parts = line.split("\t")
            code = parts[0][:1]
            entry: dict[str, Any] = {"sha": "0" * 40, "filename": parts[-1], "additions": 1, "deletions": 1, "changes": 2,
                                     "status": {"A": "added", "D": "removed", "R": "renamed", "C": "copied"}.get(code, "modified"),
                                     "blob_url": f"https://github.example/{self.full_name}/blob/{pr['head']['sha']}/{parts[-1]}",
                                     "raw_url": f"https://github.example/{self.full_name}/raw/{pr['head']['sha']}/{parts[-1]}",
                                     "contents_url": self._api(f"/contents/{parts[-1]}?ref={pr['head']['sha']}")}
            if code == "R":
                entry["previous_filename"] = parts[1]
            files.append(entry)
        return files

    # -- webhooks ------------------------------------------------------------------------------

    def _event(self, event: str, payload: dict[str, Any], sender: str) -> None:
        payload = {**payload, "repository": self.repository(), "sender": self._user(sender)}
        self._outbox.append((event, payload))

    def _pull_event(self, action: str, pr: dict[str, Any], sender: str, **extra: Any) -> None:
        self._event(gh.PULL_REQUEST, {"action": action, "number": pr["number"], "pull_request": copy.deepcopy(self._full(pr)),
                                      **extra}, sender)

    def _push_event(self, ref: str, before: str, after: str, pusher: str) -> None:
        commits = []
        if after.strip("0"):
            listing = self.git("rev-list", "--reverse", after, *([f"^{before}"] if before.strip("0") else ["-n", "1"]))
            for sha in listing.split():
                changed: dict[str, list[str]] = {"added": [], "removed": [], "modified": []}
                for line in self.git("diff-tree", "--no-commit-id", "--name-status", "-r", "-m", "--first-parent", sha).splitlines():
                    code, path = line.split("\t")[0][:1], line.split("\t")[-1]
                    changed[{"A": "added", "D": "removed"}.get(code, "modified")].append(path)
                commits.append({"id": sha, "distinct": True, **changed})
        self._event(gh.PUSH, {"ref": ref, "before": before, "after": after, "created": not before.strip("0"),
                              "deleted": not after.strip("0"), "forced": False, "commits": commits,
                              "head_commit": commits[-1] if commits else None,
                              "pusher": {"name": pusher, "email": None}}, pusher)

    def _flush(self) -> None:
        with self._lock:
            outbox, self._outbox = self._outbox, []
        for event, payload in outbox:
            self.deliver(event, payload)

    def deliver(self, event: str, payload: dict[str, Any]) -> int:
        """POST one signed delivery, with GitHub's headers; a receiver that is down gets nothing."""
        if not self.hook_url:
            self.deliveries.append(Delivery(event, payload, 0))
            return 0
        body = json.dumps(payload).encode()
        signature = "sha256=" + hmac.new(self.hook_secret.encode(), body, hashlib.sha256).hexdigest()
        request = urllib.request.Request(self.hook_url, data=body, method="POST", headers={
            "Content-Type": "application/json", gh.HEADER_EVENT: event, gh.HEADER_DELIVERY: str(uuid.uuid4()),
            gh.HEADER_SIGNATURE: signature, "User-Agent": "GitHub-Hookshot/standin"})
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:
                status = reply.status
        except urllib.error.HTTPError as error:
            status = error.code
        self.deliveries.append(Delivery(event, payload, status))
        # Wait for the receiver to handle it (tests), except for deliveries caused while it
        # handles one: the outer wait covers those, and waiting here would deadlock.
        if self.after_delivery is not None and not self._waiting:
            self._waiting += 1
            try:
                self.after_delivery()
            finally:
                self._waiting -= 1
        return status

    # -- request handling --------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: Any
               ) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            self.requests.append(Recorded(method, path, headers, body))
            if self.outage:
                return self.outage, {"message": "Service Unavailable"}, {}
            for failure in self._failures:
                if failure.times > 0 and failure.method == method and failure.pattern.search(path):
                    failure.times -= 1
                    if failure.status == DROP:
                        self._serve(method, path, query, headers, body)
                    return failure.status, failure.body, failure.headers
            status, payload, extra = self._serve(method, path, query, headers, body)
            return status, payload, {**self._rate_limit_headers(), **extra}

    def _rate_limit_headers(self) -> dict[str, str]:
        """GitHub's primary rate limit headers, on every REST response (docs.github.com/en/rest/using-the-rest-api/
        rate-limits-for-the-rest-api#checking-the-status-of-your-rate-limit)."""
        self.rate_limit_used += 1
        return {"x-ratelimit-limit": str(self.rate_limit), "x-ratelimit-remaining": str(max(0, self.rate_limit - self.rate_limit_used)),
                "x-ratelimit-used": str(self.rate_limit_used), "x-ratelimit-reset": str(int(time.time()) + 3600),
                "x-ratelimit-resource": "core"}

    def _serve(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: Any
               ) -> tuple[int, Any, dict[str, str]]:
        if path.startswith("/app/installations/") and path.endswith("/access_tokens"):
            if not headers.get("authorization", "").startswith("Bearer "):
                return 401, {"message": "A JSON web token could not be decoded"}, {}
            self.installation_tokens += 1
            token = f"ghs_installation_{self.installation_tokens}"
            self.tokens.add(token)
            self.logins[token] = "fluxbot-app[bot]"
            return 201, {"token": token, "expires_at": "2099-01-01T00:00:00Z", "permissions": {}}, {}
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() not in ("token", "bearer") or token not in self.tokens:
            return 401, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}, {}
        prefix = f"/repos/{self.full_name}"
        if not path.startswith(prefix):
            return 404, {"message": "Not Found"}, {}
        return self._route(method, path[len(prefix):], query, body, self.logins.get(token, "someone"),
                           token.startswith("ghs_"))

    def _page(self, items: list[Any], path: str, query: dict[str, list[str]]) -> tuple[int, Any, dict[str, str]]:
        per_page = min(gh.MAX_PER_PAGE, int(query.get("per_page", ["30"])[0]))
        page = int(query.get("page", ["1"])[0])
        last = max(1, -(-len(items) // per_page))
        links = []
        flat = {k: v[0] for k, v in query.items()}
        for rel, number in (("next", page + 1), ("last", last)) if page < last else ():
            url = f"{self.base_url}{self.api_prefix}/repos/{self.full_name}{path}?{urlencode({**flat, 'page': number, 'per_page': per_page})}"
            links.append(f'<{url}>; rel="{rel}"')
        return 200, items[(page - 1) * per_page: page * per_page], ({"Link": ", ".join(links)} if links else {})

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: Any, login: str, app: bool
               ) -> tuple[int, Any, dict[str, str]]:
        if method == "GET" and path == "":
            # `full-repository` has a few keys the webhook's repository object lacks
            return 200, {**self.repository(), "has_discussions": False, "network_count": 0, "subscribers_count": 0}, {}
        if path == "/pulls" and method == "GET":
            state = query.get("state", ["open"])[0]
            head = query.get("head", [""])[0]
            found = [self._simple(p) for p in self.pulls.values()
                     if (state == "all" or p["state"] == state) and (not head or p["head"]["label"] == head)]
            return self._page(found, path, query)
        if path == "/pulls" and method == "POST":
            return self._create_pull(body, login)
        if m := re.fullmatch(r"/pulls/(\d+)", path):
            pr = self.pulls.get(int(m[1]))
            if pr is None:
                return 404, {"message": "Not Found"}, {}
            if method == "PATCH":
                if body.get("state") == "closed" and pr["state"] == "open":
                    pr.update(state="closed", closed_at=_now())
                    self._pull_event("closed", pr, login)
            return 200, self._full(pr), {}
        if (m := re.fullmatch(r"/pulls/(\d+)/merge", path)) and method == "PUT":
            return self._merge(int(m[1]), body or {}, login)
        if (m := re.fullmatch(r"/pulls/(\d+)/requested_reviewers", path)) and method == "POST":
            self.reviewers.setdefault(int(m[1]), []).extend(body.get("team_reviewers", []) + body.get("reviewers", []))
            return 201, self._simple(self.pulls[int(m[1])]), {}
        if (m := re.fullmatch(r"/pulls/(\d+)/files", path)) and method == "GET":
            pr = self.pulls.get(int(m[1]))
            if pr is None:
                return 404, {"message": "Not Found"}, {}
            return self._page(self._files(pr)[:gh.MAX_PR_FILES], path, query)
        if (m := re.fullmatch(r"/commits/([0-9a-f]{40})/pulls", path)) and method == "GET":
            found = [self._simple(p) for p in self.pulls.values()
                     if p["merge_commit_sha"] == m[1] or p["head"]["sha"] == m[1]]
            return self._page(found, path, query)
        if (m := re.fullmatch(r"/commits/([0-9a-f]{40})", path)) and method == "GET":
            return 200, {"sha": m[1], "url": self._api(path), "html_url": f"https://github.example/c/{m[1]}",
                         "commit": {"message": "", "url": self._api(path)}, "parents": []}, {}
        if (m := re.fullmatch(r"/pulls/(\d+)/reviews", path)) and method == "GET":
            return 200, [], {}
        if (m := re.fullmatch(r"/issues/(\d+)/labels", path)) and method == "POST":
            names = body if isinstance(body, list) else body.get("labels", [])
            return 200, self._add_labels(int(m[1]), names, login), {}
        if (m := re.fullmatch(r"/issues/(\d+)/comments", path)) and method == "POST":
            if len(body.get("body") or "") > COMMENT_BODY_LIMIT:
                return _too_long()
            self.comments.setdefault(int(m[1]), []).append(body["body"])
            comment_id = len(self._comment_at) + 1
            self._comment_at[comment_id] = (int(m[1]), len(self.comments[int(m[1])]) - 1)
            return 201, self._comment(comment_id), {}
        if (m := re.fullmatch(r"/issues/(\d+)/comments", path)) and method == "GET":
            # https://docs.github.com/en/rest/issues/comments#list-issue-comments (oldest first, paginated)
            ids = [cid for cid, (number, _) in self._comment_at.items() if number == int(m[1])]
            per_page, page = int(query.get("per_page", ["30"])[0]), int(query.get("page", ["1"])[0])
            chunk = ids[(page - 1) * per_page: page * per_page]
            headers = {}
            if page * per_page < len(ids):
                headers["Link"] = f'<{self._api(path)}?per_page={per_page}&page={page + 1}>; rel="next"'
            return 200, [self._comment(cid) for cid in chunk], headers
        if (m := re.fullmatch(r"/issues/comments/(\d+)", path)) and method == "PATCH":
            # https://docs.github.com/en/rest/issues/comments#update-an-issue-comment
            where = self._comment_at.get(int(m[1]))
            if where is None:
                return 404, {"message": "Not Found"}, {}
            if len(body.get("body") or "") > COMMENT_BODY_LIMIT:
                return _too_long()
            self.comments[where[0]][where[1]] = body["body"]
            return 200, self._comment(int(m[1])), {}
        if (m := re.fullmatch(r"/statuses/([0-9a-f]{40})", path)) and method == "POST":
            return self._create_status(m[1], body, login)
        if path == "/check-runs" and method == "POST":
            if not app:
                # https://docs.github.com/en/rest/checks/runs#create-a-check-run: GitHub Apps only
                return 403, {"message": "You must authenticate via a GitHub App.",
                             "documentation_url": "https://docs.github.com/rest/checks/runs#create-a-check-run"}, {}
            return self._create_check_run(body, login)
        if path == "/git/tags" and method == "POST":
            sha = subprocess.run(["git", "mktag"], cwd=self.bare_repo, capture_output=True, text=True, check=True,
                                 input=f"object {body['object']}\ntype {body['type']}\ntag {body['tag']}\n"
                                       f"tagger GitHub <noreply@github.com> 1700000000 +0000\n\n{body['message']}\n"
                                 ).stdout.strip()
            return 201, {"sha": sha, "tag": body["tag"], "message": body["message"], "url": self._api(f"/git/tags/{sha}"),
                         "object": {"sha": body["object"], "type": body["type"], "url": self._api(f"/git/commits/{body['object']}")},
                         "tagger": {"name": "GitHub", "email": "noreply@github.com", "date": _now()}, "node_id": "T",
                         "verification": {"verified": False, "reason": "unsigned", "signature": None, "payload": None,
                                          "verified_at": None}}, {}
        if path == "/git/refs" and method == "POST":
            ref = body["ref"]
            if subprocess.run(["git", "rev-parse", "-q", "--verify", ref], cwd=self.bare_repo, capture_output=True).returncode == 0:
                return 422, {"message": "Reference already exists"}, {}
            self.git("update-ref", ref, body["sha"])
            return 201, {"ref": ref, "node_id": "R", "url": self._api(f"/git/{ref}"),
                         "object": {"sha": body["sha"], "type": "tag", "url": self._api(f"/git/tags/{body['sha']}")}}, {}
        return 404, {"message": "Not Found"}, {}

    def _add_labels(self, number: int, names: list[str], login: str) -> list[dict[str, Any]]:
        pr = self.pulls[number]
        for name in names:
            if name not in [l["name"] for l in pr["labels"]]:
                label = {"id": len(pr["labels"]) + 1, "name": name, "color": "ededed", "default": False,
                         "url": self._api(f"/labels/{name}"), "node_id": "L", "description": None}
                pr["labels"].append(label)
                self._pull_event("labeled", pr, login, label=label)
        return pr["labels"]

    def _create_status(self, sha: str, body: dict[str, Any], login: str) -> tuple[int, Any, dict[str, str]]:
        if body.get("state") not in gh.STATUS_STATES or len(body.get("description") or "") > gh.STATUS_DESCRIPTION_MAX:
            return 422, {"message": "Validation Failed", "errors": [{"resource": "Status", "code": "invalid"}]}, {}
        number = sum(len(v) for v in self.statuses.values()) + 1
        status = {"state": body["state"], "context": body.get("context", "default"),
                  "description": body.get("description"), "target_url": body.get("target_url"),
                  "created_at": _now(), "updated_at": _now(), "id": number, "url": self._api(f"/statuses/{sha}"),
                  "node_id": "S", "avatar_url": None, "creator": self._user(login)}
        self.statuses.setdefault(sha, []).append(status)
        self._event(gh.STATUS, {"id": number, "sha": sha, "name": self.full_name, "target_url": status["target_url"],
                                "context": status["context"], "description": status["description"],
                                "state": status["state"], "commit": {"sha": sha}, "branches": [],
                                "created_at": status["created_at"], "updated_at": status["updated_at"]}, login)
        return 201, status, {}

    def _create_check_run(self, body: dict[str, Any], login: str) -> tuple[int, Any, dict[str, str]]:
        sha = body["head_sha"]
        run = {"id": sum(len(v) for v in self.check_runs.values()) + 1, "name": body["name"], "head_sha": sha,
               "status": body.get("status", "queued"), "conclusion": body.get("conclusion"),
               "output": {"title": None, "summary": None, "text": None, "annotations_count": 0,
                          "annotations_url": self._api("/check-runs/annotations"), **(body.get("output") or {})},
               "app": {"id": 4242, "slug": login.removesuffix("[bot]"), "node_id": "A", "name": login, "owner": None,
                       "description": None, "external_url": "https://fluxbot.example", "html_url": "https://github.example/apps/fluxbot",
                       "created_at": _now(), "updated_at": _now(), "permissions": {"checks": "write"}, "events": []},
               "check_suite": {"id": 1}, "started_at": _now(), "completed_at": _now() if body.get("conclusion") else None,
               "url": self._api("/check-runs"), "html_url": "https://github.example/runs", "details_url": None,
               "node_id": "C", "external_id": "", "pull_requests": []}
        self.check_runs.setdefault(sha, []).append(run)
        self._event(gh.CHECK_RUN, {"action": "completed" if run["conclusion"] else "created", "check_run": run}, login)
        return 201, run, {}

    def _create_pull(self, body: dict[str, Any], login: str = "fluxbot-token-user") -> tuple[int, Any, dict[str, str]]:
        head, base = body.get("head", ""), body.get("base", "")
        head_ref = head.split(":", 1)[-1]
        sha = subprocess.run(["git", "rev-parse", "--verify", "-q", f"refs/heads/{head_ref}"], cwd=self.bare_repo,
                             capture_output=True, text=True).stdout.strip()
        if not sha:
            return 422, {"message": "Validation Failed",
                         "errors": [{"resource": "PullRequest", "field": "head", "code": "invalid"}]}, {}
        if any(p["head"]["ref"] == head_ref and p["state"] == "open" for p in self.pulls.values()):
            return 422, {"message": "Validation Failed", "errors": [{"resource": "PullRequest", "code": "custom",
                         "message": f"A pull request already exists for {self.owner}:{head_ref}."}]}, {}
        number = max(self.pulls, default=0) + 1
        self.pulls[number] = self._pull(number, body.get("title", ""), body.get("body", ""), head_ref, sha, base, login)
        # GitHub sends `opened` at once, while this call is still being answered
        self._pull_event("opened", self.pulls[number], login)
        return 201, self._full(self.pulls[number]), {}

    def _protection_refusal(self, pr: dict[str, Any]) -> str:
        rules = self.protection
        if rules is None:
            return ""
        if rules.merge_queue:
            return "Changes must be made through the merge queue"
        sha = pr["head"]["sha"]
        for context in rules.contexts:
            runs = [r for r in self.check_runs.get(sha, []) if r["name"] == context]
            statuses = [] if rules.checks_from_app_only else [s for s in self.statuses.get(sha, []) if s["context"] == context]
            latest = (runs[-1]["conclusion"] if runs else None) or (statuses[-1]["state"] if statuses else None)
            if latest is None:
                return f'Required status check "{context}" is expected.'
            if latest != "success":
                return f'Required status check "{context}" is {"failing" if latest == "failure" else "pending"}.'
        return ""

    def _merge(self, number: int, body: dict[str, Any] | None = None, login: str = "fluxbot-token-user",
               bypass: bool = False) -> tuple[int, Any, dict[str, str]]:
        body = body or {}
        pr = self.pulls.get(number)
        if pr is None or pr["state"] != "open":
            return 405, {"message": "Pull Request is not mergeable"}, {}
        method = body.get("merge_method", "merge")
        if method not in self.merge_methods:
            words = {"merge": "Merge commits", "squash": "Squash merges", "rebase": "Rebase merges"}[method]
            return 405, {"message": f"{words} are not allowed on this repository."}, {}
        if body.get("sha") and body["sha"] != pr["head"]["sha"]:
            return 409, {"message": "Head branch was modified. Review and try the merge again."}, {}
        refusal = "" if bypass else self._protection_refusal(pr)
        if refusal:
            return 405, {"message": f"Repository rule violations found\n\n{refusal}"}, {}
        base = f"refs/heads/{pr['base']['ref']}"
        before = self.git("rev-parse", base)
        head = f"refs/heads/{pr['head']['ref']}"
        parents = ["-p", base, "-p", head] if method == "merge" else ["-p", base]
        merge = self.git("commit-tree", f"{head}^{{tree}}", *parents, "-m", body.get("commit_title") or f"Merge pull request #{number}")
        self.git("update-ref", base, merge)
        pr.update(state="closed", merged=True, merged_at=_now(), closed_at=_now(), merge_commit_sha=merge,
                  merged_by=self._user(login))
        self._pull_event("closed", pr, login)
        self._push_event(base, before, merge, login)
        return 200, {"sha": merge, "merged": True, "message": "Pull Request successfully merged"}, {}


def _handler(standin: GitHubStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            url = urlparse(self.path)
            path = url.path.removeprefix("/api/v3")  # GitHub Enterprise's prefix
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else {}
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, payload, extra = standin.handle(self.command, path, parse_qs(url.query), headers, body)
            standin._flush()  # the webhooks this request caused go out before it is answered
            if status == DROP:
                self.close_connection = True
                self.connection.close()
                return
            send_json(self, status, payload, extra, content_type="application/json; charset=utf-8")

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

    return Handler
