"""The GitHub stand-in held against GitHub's published REST description (#14).

tests/standins/github_rest.json is an extract of @octokit/openapi's api.github.com description
(source and version inside; tests/standins/github_rest_extract.py writes it). Every operation the
stand-in serves is called over HTTP here; its status code must be one the description lists, its
answer must carry every key the description requires, and the fields fluxbot reads must be
properties the description has, so the stand-in cannot drift into fiction.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from bot.github import vocabulary as gh
from tests.conftest import GITHUB_TOKEN, git
from tests.standins.github import FULL_PULL_ONLY, Protection

DESCRIPTION = json.loads((Path(__file__).parent.parent / "standins" / "github_rest.json").read_text())
OPERATIONS: dict[str, Any] = DESCRIPTION["operations"]
APP_TOKEN = "ghs_app_token_for_the_description_test"

# What fluxbot (through PyGithub) reads of each answer: these must be documented properties.
READS = {
    "GET /repos/{owner}/{repo}": ("url", "default_branch", "full_name", *gh.MERGE_METHOD_SETTINGS.values()),
    "GET /repos/{owner}/{repo}/pulls": ("number", "title", "html_url", "state", "user", "head", "body", "labels",
                                        "created_at", "merge_commit_sha"),
    "GET /repos/{owner}/{repo}/pulls/{pull_number}": ("number", "title", "html_url", "state", "merged", "user", "head",
                                                      "base", "changed_files", "merge_commit_sha", "body", "labels"),
    "GET /repos/{owner}/{repo}/pulls/{pull_number}/files": ("filename", "previous_filename", "status"),
    "PUT /repos/{owner}/{repo}/pulls/{pull_number}/merge": ("sha", "merged", "message"),
    "GET /repos/{owner}/{repo}/commits/{commit_sha}/pulls": ("number", "merged_at", "merge_commit_sha"),
    "POST /repos/{owner}/{repo}/git/tags": ("sha",),
    "POST /repos/{owner}/{repo}/check-runs": ("id", "name", "head_sha", "status", "conclusion"),
    "POST /app/installations/{installation_id}/access_tokens": ("token", "expires_at"),
}


class Caller:
    """Plain HTTP against the stand-in, recording which described operation each call was."""

    def __init__(self, standin) -> None:
        self.standin = standin
        self.seen: dict[str, list[int]] = {}

    def __call__(self, operation: str, path: str, body: Any = None, token: str = GITHUB_TOKEN,
                 scheme: str = "token") -> tuple[int, Any]:
        method = operation.split()[0]
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.standin.base_url + path, data=data, method=method,
                                         headers={"Authorization": f"{scheme} {token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=20) as reply:
                status, answer = reply.status, json.loads(reply.read() or b"null")
        except urllib.error.HTTPError as error:
            status, answer = error.code, json.loads(error.read() or b"null")
        described = OPERATIONS[operation]
        assert str(status) in described["responses"], f"{operation} answered {status}; GitHub documents {sorted(described['responses'])}"
        schema = described["responses"][str(status)]
        if schema is not None:
            conforms(answer, schema, operation)
        self.seen.setdefault(operation, []).append(status)
        return status, answer


def conforms(answer: Any, schema: dict[str, Any], where: str) -> None:
    if schema.get("type") == "array":
        assert isinstance(answer, list), where
        for item in answer:
            conforms(item, schema["items"], f"{where}[]")
        return
    if schema.get("type") != "object":
        return
    assert isinstance(answer, dict), where
    missing = [key for key in schema.get("required", []) if key not in answer]
    assert missing == [], f"{where} lacks keys GitHub always sends: {missing}"
    properties = schema.get("properties")
    if properties is None:
        return
    invented = [key for key in answer if key not in properties]
    assert invented == [], f"{where} has keys GitHub does not describe: {invented}"
    for key, sub in properties.items():
        if key in answer and answer[key] is not None:
            if "enum" in sub:
                assert answer[key] in sub["enum"], f"{where}.{key} = {answer[key]!r}, not one of {sub['enum']}"
            if sub.get("type") == "object" and sub.get("required"):
                conforms(answer[key], sub, f"{where}.{key}")


def test_the_description_is_the_published_one() -> None:
    assert DESCRIPTION["source"].startswith("npm @octokit/openapi@")
    for operation, fields in READS.items():
        schema = OPERATIONS[operation]["responses"][next(c for c in OPERATIONS[operation]["responses"] if c.startswith("2"))]
        properties = (schema.get("items") or schema)["properties"]
        assert [f for f in fields if f not in properties] == [], operation
    # the list endpoint answers pull-request-simple: what the stand-in leaves out is what GitHub leaves out
    simple = OPERATIONS["GET /repos/{owner}/{repo}/pulls"]["responses"]["200"]["items"]["properties"]
    full = OPERATIONS["GET /repos/{owner}/{repo}/pulls/{pull_number}"]["responses"]["200"]["properties"]
    assert set(FULL_PULL_ONLY) == set(full) - set(simple)
    assert "renamed" in OPERATIONS["GET /repos/{owner}/{repo}/pulls/{pull_number}/files"]["responses"]["200"]["items"][
        "properties"]["status"]["enum"]


def test_every_operation_the_standin_serves_answers_as_described(github_standin, tmp_path: Path) -> None:
    gh_ = github_standin
    gh_.tokens.add(APP_TOKEN)
    gh_.logins[APP_TOKEN] = "fluxbot-app[bot]"
    call = Caller(gh_)
    repo = f"/repos/{gh_.full_name}"
    work = tmp_path / "w"
    git(tmp_path, "clone", "-q", str(gh_.bare_repo), str(work))
    git(work, "checkout", "-q", "-b", "feature")
    git(work, "mv", "clusters/demo/apps/values/podinfo.yaml", "clusters/demo/apps/values/podinfo-renamed.yaml")
    git(work, "-c", "user.name=x", "-c", "user.email=x@x", "commit", "-qm", "rename")
    git(work, "push", "-q", "origin", "HEAD")

    assert call("GET /repos/{owner}/{repo}", repo)[0] == 200
    status, pull = call("POST /repos/{owner}/{repo}/pulls", f"{repo}/pulls", {"head": "feature", "base": "main", "title": "t"})
    assert status == 201
    assert call("POST /repos/{owner}/{repo}/pulls", f"{repo}/pulls", {"head": "feature", "base": "main", "title": "t"})[0] == 422
    number, head = pull["number"], pull["head"]["sha"]
    status, listed = call("GET /repos/{owner}/{repo}/pulls", f"{repo}/pulls?state=open&per_page=1")
    assert status == 200 and [p["number"] for p in listed] == [number] and "merged" not in listed[0]
    assert call("GET /repos/{owner}/{repo}/pulls/{pull_number}", f"{repo}/pulls/{number}")[1]["changed_files"] == 1
    assert call("GET /repos/{owner}/{repo}/pulls/{pull_number}", f"{repo}/pulls/999")[0] == 404
    _, files = call("GET /repos/{owner}/{repo}/pulls/{pull_number}/files", f"{repo}/pulls/{number}/files")
    assert [(f["status"], f["previous_filename"]) for f in files] == [("renamed", "clusters/demo/apps/values/podinfo.yaml")]
    call("POST /repos/{owner}/{repo}/issues/{issue_number}/labels", f"{repo}/issues/{number}/labels", {"labels": ["x"]})
    call("POST /repos/{owner}/{repo}/pulls/{pull_number}/requested_reviewers",
         f"{repo}/pulls/{number}/requested_reviewers", {"team_reviewers": ["t"]})
    _, comment = call("POST /repos/{owner}/{repo}/issues/{issue_number}/comments", f"{repo}/issues/{number}/comments",
                      {"body": "hi"})
    call("GET /repos/{owner}/{repo}/issues/{issue_number}/comments", f"{repo}/issues/{number}/comments")
    call("PATCH /repos/{owner}/{repo}/issues/comments/{comment_id}", f"{repo}/issues/comments/{comment['id']}", {"body": "ho"})
    call("POST /repos/{owner}/{repo}/statuses/{sha}", f"{repo}/statuses/{head}",
         {"state": "pending", "context": gh.GATE_CONTEXT, "description": "d"})
    run = {"name": gh.GATE_CONTEXT, "head_sha": head, "status": "completed", "conclusion": "success",
           "output": {"title": "t", "summary": "s"}}
    assert call("POST /repos/{owner}/{repo}/check-runs", f"{repo}/check-runs", run, token=APP_TOKEN)[0] == 201
    # checks/create documents no error answer; "OAuth apps and personal access tokens (classic) cannot use
    # this endpoint" (https://docs.github.com/en/rest/checks/runs#create-a-check-run): GitHub answers 403
    OPERATIONS["POST /repos/{owner}/{repo}/check-runs"]["responses"].setdefault("403", None)
    assert call("POST /repos/{owner}/{repo}/check-runs", f"{repo}/check-runs", run)[0] == 403

    gh_.merge_methods = {"squash"}
    assert call("PUT /repos/{owner}/{repo}/pulls/{pull_number}/merge", f"{repo}/pulls/{number}/merge", {})[0] == 405
    assert call("PUT /repos/{owner}/{repo}/pulls/{pull_number}/merge", f"{repo}/pulls/{number}/merge",
                {"merge_method": "squash", "sha": "0" * 40})[0] == 409
    gh_.protection = Protection(checks_from_app_only=True)
    gh_.statuses[head].append({**gh_.statuses[head][-1], "state": "success"})  # a status does not count
    gh_.check_runs.clear()
    assert call("PUT /repos/{owner}/{repo}/pulls/{pull_number}/merge", f"{repo}/pulls/{number}/merge",
                {"merge_method": "squash", "sha": head})[0] == 405
    call("POST /repos/{owner}/{repo}/check-runs", f"{repo}/check-runs", run, token=APP_TOKEN)
    status, merged = call("PUT /repos/{owner}/{repo}/pulls/{pull_number}/merge", f"{repo}/pulls/{number}/merge",
                          {"merge_method": "squash", "sha": head})
    assert status == 200 and merged["merged"] is True
    _, pulls = call("GET /repos/{owner}/{repo}/commits/{commit_sha}/pulls", f"{repo}/commits/{merged['sha']}/pulls")
    assert [p["number"] for p in pulls] == [number] and pulls[0]["merge_commit_sha"] == merged["sha"]
    call("PATCH /repos/{owner}/{repo}/pulls/{pull_number}", f"{repo}/pulls/{number}", {"state": "closed"})

    _, tag = call("POST /repos/{owner}/{repo}/git/tags", f"{repo}/git/tags",
                  {"tag": "v9.9.9", "message": "m", "object": merged["sha"], "type": "commit"})
    assert call("POST /repos/{owner}/{repo}/git/refs", f"{repo}/git/refs", {"ref": "refs/tags/v9.9.9", "sha": tag["sha"]})[0] == 201
    assert call("POST /repos/{owner}/{repo}/git/refs", f"{repo}/git/refs", {"ref": "refs/tags/v9.9.9", "sha": tag["sha"]})[0] == 422
    assert call("POST /app/installations/{installation_id}/access_tokens", "/app/installations/7/access_tokens",
                token="a.jwt.token", scheme="Bearer")[0] == 201
    assert sorted(call.seen) == sorted(OPERATIONS), "every described operation is exercised"


def test_lists_paginate_with_link_headers(github_standin) -> None:
    for number in range(1, 4):
        github_standin.pulls[number] = github_standin._pull(number, f"p{number}", "", "main", "0" * 40, "main", "u")
    url = f"{github_standin.base_url}/repos/{github_standin.full_name}/pulls?per_page=2"
    request = urllib.request.Request(url, headers={"Authorization": f"token {GITHUB_TOKEN}"})
    with urllib.request.urlopen(request, timeout=20) as reply:
        first, link = json.loads(reply.read()), reply.headers["Link"]
    assert len(first) == 2 and 'rel="next"' in link and "page=2" in link
    nxt = link.split(";")[0].strip("<>")
    with urllib.request.urlopen(urllib.request.Request(nxt, headers={"Authorization": f"token {GITHUB_TOKEN}"}),
                                timeout=20) as reply:
        assert [p["number"] for p in json.loads(reply.read())] == [3] and "Link" not in reply.headers


@pytest.mark.parametrize("event, action", [("pull_request", "opened"), ("pull_request", "labeled"),
                                           ("status", None), ("push", None)])
def test_webhooks_are_signed_and_carry_githubs_headers(github_standin, tmp_path: Path, event, action) -> None:
    import hashlib
    import hmac
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    received: list[tuple[dict[str, str], bytes]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(({k.lower(): v for k, v in self.headers.items()},
                             self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        github_standin.hook_url = f"http://127.0.0.1:{server.server_address[1]}/github/webhook"
        github_standin.hook_secret = "webhook-secret-0123"
        work = tmp_path / "w"
        git(tmp_path, "clone", "-q", str(github_standin.bare_repo), str(work))
        before = git(work, "rev-parse", "HEAD")
        (work / "NOTES.md").write_text("x\n")
        git(work, "add", "-A")
        git(work, "-c", "user.name=x", "-c", "user.email=x@x", "commit", "-qm", "notes")
        git(work, "push", "-q", "origin", "HEAD:refs/heads/notes")
        github_standin.pushed("notes", "dev", before=before)
        pull = github_standin.open_pull_by_hand("notes", "notes", "dev")
        github_standin.label(pull["number"], "docs", "dev")
        github_standin.post_status(pull["head"]["sha"], "success", "ci", "dev")
    finally:
        server.shutdown()
        server.server_close()
    hits = [(h, b) for h, b in received if h[gh.HEADER_EVENT.lower()] == event
            and (action is None or json.loads(b).get("action") == action)]
    assert hits, [h[gh.HEADER_EVENT.lower()] for h, _ in received]
    headers, body = hits[0]
    assert headers[gh.HEADER_SIGNATURE.lower()] == "sha256=" + hmac.new(b"webhook-secret-0123", body, hashlib.sha256).hexdigest()
    assert headers[gh.HEADER_DELIVERY.lower()]
    payload = json.loads(body)
    assert payload["repository"]["full_name"] == github_standin.full_name and payload["sender"]["login"] == "dev"
    if action == "opened":
        assert payload["pull_request"]["labels"] == []  # sent before any label existed
