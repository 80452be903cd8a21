"""Write tests/standins/github_rest.json: the part of GitHub's REST description the stand-in serves.

Source: the npm package @octokit/openapi (https://github.com/octokit/openapi, MIT), file
generated/api.github.com.deref.json. To refresh it:

    npm pack @octokit/openapi@23.0.2 && tar -xzf octokit-openapi-23.0.2.tgz
    python tests/standins/github_rest_extract.py package/generated/api.github.com.deref.json tests/standins/github_rest.json

tests/bot/test_github_standin.py holds the stand-in against the extract.
"""
import json
import sys

src = sys.argv[1]
d = json.load(open(src))
ENDPOINTS = [
    ("/repos/{owner}/{repo}", "get"),
    ("/repos/{owner}/{repo}/pulls", "get"),
    ("/repos/{owner}/{repo}/pulls", "post"),
    ("/repos/{owner}/{repo}/pulls/{pull_number}", "get"),
    ("/repos/{owner}/{repo}/pulls/{pull_number}", "patch"),
    ("/repos/{owner}/{repo}/pulls/{pull_number}/files", "get"),
    ("/repos/{owner}/{repo}/pulls/{pull_number}/merge", "put"),
    ("/repos/{owner}/{repo}/pulls/{pull_number}/requested_reviewers", "post"),
    ("/repos/{owner}/{repo}/issues/{issue_number}/labels", "post"),
    ("/repos/{owner}/{repo}/issues/{issue_number}/comments", "post"),
    ("/repos/{owner}/{repo}/issues/{issue_number}/comments", "get"),
    ("/repos/{owner}/{repo}/issues/comments/{comment_id}", "patch"),
    ("/repos/{owner}/{repo}/statuses/{sha}", "post"),
    ("/repos/{owner}/{repo}/check-runs", "post"),
    ("/repos/{owner}/{repo}/commits/{commit_sha}/pulls", "get"),
    ("/repos/{owner}/{repo}/git/tags", "post"),
    ("/repos/{owner}/{repo}/git/refs", "post"),
    ("/app/installations/{installation_id}/access_tokens", "post"),
]
def shape(schema, depth=0):
    if schema is None:
        return None
    if "allOf" in schema:
        merged = {"type": "object", "properties": {}, "required": []}
        for part in schema["allOf"]:
            s = shape(part, depth)
            if s and s.get("type") == "object":
                merged["properties"].update(s.get("properties", {}))
                merged["required"] += s.get("required", [])
        return merged
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return shape(schema[key][0], depth)
    t = schema.get("type")
    if t == "array":
        return {"type": "array", "items": shape(schema.get("items"), depth)}
    if t == "object" or "properties" in schema:
        out = {"type": "object", "required": sorted(schema.get("required", []))}
        props = schema.get("properties", {})
        if depth < 1:
            out["properties"] = {k: shape(v, depth + 1) or {} for k, v in sorted(props.items())}
        else:
            out = {"type": "object", "required": out["required"]}  # nested: what must be there
            return out
        return out
    leaf = {"type": t} if t else {}
    if "enum" in schema:
        leaf["enum"] = schema["enum"]
    return leaf
out = {"source": "npm @octokit/openapi@23.0.2, generated/api.github.com.deref.json (https://github.com/octokit/openapi), MIT",
       "note": "only the operations the stand-in serves; schemas cut to the top-level properties (type, enum) and the required keys of nested objects",
       "operations": {}}
for path, method in ENDPOINTS:
    op = d["paths"][path][method]
    responses = {}
    for code, resp in op["responses"].items():
        content = (resp.get("content") or {}).get("application/json")
        responses[code] = shape(content["schema"]) if content and code.startswith("2") else None
    out["operations"][f"{method.upper()} {path}"] = {"operationId": op["operationId"], "responses": responses}
json.dump(out, open(sys.argv[2], "w"), indent=None, separators=(",", ":"), sort_keys=True)
