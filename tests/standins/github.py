"""A GitHub REST stand-in on 127.0.0.1 for the real PyGithub client.

It serves the endpoints fluxbot uses, shaped after GitHub's own webhook examples (the pull
request and repository objects in ../shared/fixtures/payloads/github/ are the templates), checks
the Authorization header, keeps branches in a real bare repository, records every request, and
can be told to fail a route (status, body, headers) a number of times.
"""
from __future__ import annotations

import copy
import json
import re
import subprocess
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from tests.standins.http import send_json


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


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


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class GitHubStandIn:
    owner: str
    name: str
    bare_repo: Path
    templates: dict[str, Any]  # {"pull_request": ..., "repository": ...} from the fixtures
    tokens: set[str] = field(default_factory=lambda: {"ghp_standin_token_0123456789"})
    pulls: dict[int, dict[str, Any]] = field(default_factory=dict)
    comments: dict[int, list[str]] = field(default_factory=dict)
    statuses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    reviewers: dict[int, list[str]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    installation_tokens: int = 0
    api_prefix: str = ""  # "/api/v3" to answer like GitHub Enterprise
    outage: int = 0  # while set, every API request is answered with this status (an incident)

    def __post_init__(self) -> None:
        self._comment_at: dict[int, tuple[int, int]] = {}  # comment id -> (issue number, index in comments)
        self._failures: list[_Failure] = []
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
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
        """Answer the next `times` matching requests with an error like GitHub's."""
        body: dict[str, Any] = {"message": message or "error", "documentation_url": "https://docs.github.com/rest"}
        if errors:
            body["errors"] = errors
        self._failures.append(_Failure(method, re.compile(path_regex), status, body, headers or {}, times))

    def branches(self) -> list[str]:
        out = subprocess.run(["git", "for-each-ref", "--format=%(refname:strip=2)", "refs/heads"],
                             cwd=self.bare_repo, capture_output=True, text=True, check=True).stdout
        return out.split()

    def fluxbot_branches(self) -> list[str]:
        return [b for b in self.branches() if b.startswith("fluxbot/")]

    def push_commit(self, number: int, sha: str) -> None:
        """New commits on a PR: move its head (as a `synchronize` event would report)."""
        self.pulls[number]["head"]["sha"] = sha

    def gate_states(self, sha: str) -> list[str]:
        return [s["state"] for s in self.statuses.get(sha, []) if s["context"] == "fluxbot/change-gate"]

    def open_pulls(self) -> list[dict[str, Any]]:
        return [p for p in self.pulls.values() if p["state"] == "open"]

    # -- objects shaped like GitHub's --------------------------------------------------------

    def _api(self, path: str) -> str:
        return f"{self.base_url}{self.api_prefix}/repos/{self.full_name}{path}"

    def repository(self) -> dict[str, Any]:
        repo = copy.deepcopy(self.templates["repository"])
        repo.update(
            name=self.name, full_name=self.full_name, default_branch="main", url=self._api(""),
            html_url=f"https://github.example/{self.full_name}", private=True,
        )
        repo["owner"] = {**repo["owner"], "login": self.owner}
        return repo

    def _comment(self, comment_id: int) -> dict[str, Any]:
        """An `issue-comment` as the REST API returns it (the fields PyGithub reads)."""
        number, index = self._comment_at[comment_id]
        return {"id": comment_id, "node_id": f"IC_{comment_id}", "url": self._api(f"/issues/comments/{comment_id}"),
                "html_url": f"https://github.example/{self.full_name}/pull/{number}#issuecomment-{comment_id}",
                "issue_url": self._api(f"/issues/{number}"), "body": self.comments[number][index],
                "user": {"login": "fluxbot[bot]", "id": 1, "type": "Bot"}, "created_at": _now(), "updated_at": _now(),
                "author_association": "NONE"}

    def _pull(self, number: int, title: str, body: str, head: str, sha: str, base: str, user: str) -> dict[str, Any]:
        pr = copy.deepcopy(self.templates["pull_request"])
        pr.update(
            url=self._api(f"/pulls/{number}"), id=1000 + number, number=number, state="open", title=title,
            body=body, html_url=f"https://github.example/{self.full_name}/pull/{number}",
            issue_url=self._api(f"/issues/{number}"), created_at=_now(), updated_at=_now(),
            closed_at=None, merged_at=None, merged=False, merge_commit_sha=None, labels=[], draft=False,
            requested_reviewers=[], requested_teams=[], assignees=[], assignee=None, milestone=None,
        )
        pr["user"] = {**pr["user"], "login": user}
        pr["head"] = {**pr["head"], "ref": head, "sha": sha, "label": f"{self.owner}:{head}", "repo": self.repository()}
        pr["base"] = {**pr["base"], "ref": base, "repo": self.repository()}
        return pr

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
                    return failure.status, failure.body, failure.headers
            if path.startswith("/app/installations/") and path.endswith("/access_tokens"):
                if not headers.get("authorization", "").startswith("Bearer "):
                    return 401, {"message": "A JSON web token could not be decoded"}, {}
                self.installation_tokens += 1
                token = f"ghs_installation_{self.installation_tokens}"
                self.tokens.add(token)
                return 201, {"token": token, "expires_at": "2099-01-01T00:00:00Z", "permissions": {}}, {}
            scheme, _, token = headers.get("authorization", "").partition(" ")
            if scheme.lower() not in ("token", "bearer") or token not in self.tokens:
                return 401, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}, {}
            prefix = f"/repos/{self.full_name}"
            if not path.startswith(prefix):
                return 404, {"message": "Not Found"}, {}
            return self._route(method, path[len(prefix):], query, body)

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any, dict[str, str]]:
        if method == "GET" and path == "":
            return 200, self.repository(), {}
        if path == "/pulls" and method == "GET":
            state = query.get("state", ["open"])[0]
            head = query.get("head", [""])[0]
            found = [p for p in self.pulls.values()
                     if (state == "all" or p["state"] == state) and (not head or p["head"]["label"] == head)]
            return 200, found, {}
        if path == "/pulls" and method == "POST":
            return self._create_pull(body)
        if m := re.fullmatch(r"/pulls/(\d+)", path):
            pr = self.pulls.get(int(m[1]))
            if pr is None:
                return 404, {"message": "Not Found"}, {}
            if method == "PATCH":
                if body.get("state") == "closed":
                    pr.update(state="closed", closed_at=_now())
                return 200, pr, {}
            return 200, pr, {}
        if (m := re.fullmatch(r"/pulls/(\d+)/merge", path)) and method == "PUT":
            return self._merge(int(m[1]))
        if (m := re.fullmatch(r"/pulls/(\d+)/requested_reviewers", path)) and method == "POST":
            self.reviewers.setdefault(int(m[1]), []).extend(body.get("team_reviewers", []) + body.get("reviewers", []))
            return 201, self.pulls[int(m[1])], {}
        if (m := re.fullmatch(r"/pulls/(\d+)/files", path)) and method == "GET":
            pr = self.pulls.get(int(m[1]))
            if pr is None:
                return 404, {"message": "Not Found"}, {}
            names = subprocess.run(["git", "diff", "--name-only", f"{pr['base']['ref']}...{pr['head']['sha']}"],
                                   cwd=self.bare_repo, capture_output=True, text=True, check=True).stdout.split()
            return 200, [{"sha": "0" * 40, "filename": n, "status": "modified", "additions": 1, "deletions": 1,
                          "changes": 2} for n in names], {}
        if (m := re.fullmatch(r"/commits/([0-9a-f]{40})", path)) and method == "GET":
            return 200, {"sha": m[1], "url": self._api(path), "html_url": f"https://github.example/c/{m[1]}",
                         "commit": {"message": "", "url": self._api(path)}, "parents": []}, {}
        if (m := re.fullmatch(r"/pulls/(\d+)/reviews", path)) and method == "GET":
            return 200, [], {}
        if (m := re.fullmatch(r"/issues/(\d+)/labels", path)) and method == "POST":
            pr = self.pulls[int(m[1])]
            names = body if isinstance(body, list) else body.get("labels", [])
            for name in names:
                if name not in [l["name"] for l in pr["labels"]]:
                    pr["labels"].append({"id": len(pr["labels"]) + 1, "name": name, "color": "ededed",
                                         "default": False, "url": self._api(f"/labels/{name}")})
            return 200, pr["labels"], {}
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
            status = {"state": body["state"], "context": body.get("context", "default"),
                      "description": body.get("description"), "target_url": body.get("target_url"),
                      "created_at": _now(), "updated_at": _now(), "id": 1, "url": self._api(path)}
            self.statuses.setdefault(m[1], []).append(status)
            return 201, status, {}
        return 404, {"message": "Not Found"}, {}

    def _create_pull(self, body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
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
        self.pulls[number] = self._pull(number, body.get("title", ""), body.get("body", ""), head_ref, sha, base,
                                        "fluxbot[bot]")
        return 201, self.pulls[number], {}

    def _merge(self, number: int) -> tuple[int, Any, dict[str, str]]:
        pr = self.pulls.get(number)
        if pr is None or pr["state"] != "open":
            return 405, {"message": "Pull Request is not mergeable"}, {}
        git = lambda *a: subprocess.run(["git", *a], cwd=self.bare_repo, capture_output=True, text=True,  # noqa: E731
                                        check=True, env={"GIT_AUTHOR_NAME": "GitHub", "GIT_AUTHOR_EMAIL": "noreply@github.com",
                                                         "GIT_COMMITTER_NAME": "GitHub", "GIT_COMMITTER_EMAIL": "noreply@github.com"}).stdout.strip()
        head = f"refs/heads/{pr['head']['ref']}"
        merge = git("commit-tree", f"{head}^{{tree}}", "-p", "refs/heads/main", "-p", head, "-m", f"Merge pull request #{number}")
        git("update-ref", "refs/heads/main", merge)
        pr.update(state="closed", merged=True, merged_at=_now(), closed_at=_now(), merge_commit_sha=merge)
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
            send_json(self, status, payload, extra, content_type="application/json; charset=utf-8")

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

    return Handler
