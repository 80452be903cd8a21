"""fluxbot.yaml's JSON schema (one file, `fluxbot.schema.json` beside this module) and its checks.

Two users: `load_settings` validates every config file with it, reporting key paths and line
numbers; the Helm chart's values.schema.json embeds it for `config:` (`python -m bot.schema --write`
copies it there; tests/test_packaging.py fails when the two differ).
"""
from __future__ import annotations

import difflib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import jsonschema
from ruamel.yaml.nodes import MappingNode, Node, SequenceNode

SCHEMA_FILE = Path(__file__).with_name("fluxbot.schema.json")
CHART_SCHEMA = Path(__file__).resolve().parents[2] / "helm" / "fluxbot" / "values.schema.json"

# What a value is for, where the schema's own words ("does not match '\\S'") would not help.
_HINTS = {
    "gate.change_channel": "the Slack channel ID where change requests are posted (e.g. C0CHANGES); "
                           "or set gate.provider to `webhook` or `none`",
    "gate.approvers_group": "the Slack user group ID whose members approve (e.g. S0CAB); "
                            "or set gate.provider to `webhook` or `none`",
    "gate.webhook_url": "an http(s) URL where change requests are POSTed (gate.provider `webhook`)",
    "gate.webhook_token_env": "the name of an environment variable holding the bearer token",
    "forge.token_env": "the name of an environment variable holding the GitHub token",
    "forge.repository": "`owner/name` of the GitHub repository",
    "forge.base_url": "an http(s) URL such as https://api.github.com or https://HOST/api/v3",
}
_TYPES = {"number": "a number", "integer": "a whole number", "string": "a string", "boolean": "true or false",
          "object": "a mapping", "array": "a list", "null": "empty"}


def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_FILE.read_text())


@dataclass(frozen=True)
class Problem:
    """One thing wrong in the config: where (key path, line) and what would work."""

    path: str
    line: int
    message: str

    def __str__(self) -> str:
        where = f"`{self.path}`" if self.path else "the top level"
        return f"{where} (line {self.line}): {self.message}"


def dotted(path: Iterable[Any]) -> str:
    out = ""
    for key in path:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out


def _node(root: Node | None, path: Iterable[Any], key: bool = False) -> Node | None:
    """The YAML node at `path` (its key node when `key`), or the deepest one that exists."""
    node = root
    steps = list(path)
    for index, step in enumerate(steps):
        last = index == len(steps) - 1
        if isinstance(node, MappingNode):
            match = next(((k, v) for k, v in node.value if str(k.value) == str(step)), None)
            if match is None:
                return node
            node = match[0] if key and last else match[1]
        elif isinstance(node, SequenceNode) and isinstance(step, int) and step < len(node.value):
            node = node.value[step]
        else:
            return node
    return node


def _line(root: Node | None, path: Iterable[Any], key: bool = False) -> int:
    node = _node(root, path, key)
    return node.start_mark.line + 1 if node is not None else 1


def dotted_line(root: Node | None, path: list[Any]) -> int:
    """The line of the key at `path` (1 when it is not in the file)."""
    return _line(root, path, key=True)


def _shape(schema_part: dict[str, Any]) -> str:
    if "description" in schema_part:
        return schema_part["description"]
    kind = schema_part.get("type")
    if isinstance(kind, list):
        return " or ".join(_TYPES.get(k, k) for k in kind)
    return _TYPES.get(kind, "something else")


def _problems(error: jsonschema.ValidationError, root: Node | None) -> list[Problem]:
    path = list(error.absolute_path)
    name = dotted(path)
    line = _line(root, path)
    value = error.instance
    hint = _HINTS.get(name)
    if error.validator == "additionalProperties":
        known = sorted((error.schema.get("properties") or {}).keys())
        extra = sorted(set(value) - set(known)) if isinstance(value, dict) else []
        out = []
        for key in extra:
            close = difflib.get_close_matches(str(key), known, n=1)
            guess = f"did you mean `{close[0]}`? " if close else ""
            out.append(Problem(dotted([*path, key]), _line(root, [*path, key], key=True),
                               f"unknown key; {guess}known keys here: {', '.join(known)}"))
        if out:
            return out
        return [Problem(name, line, f"must be {_shape(error.schema.get('additionalProperties') or {})}")]
    if error.validator == "required":
        missing = str(error.message).split("'")[1] if "'" in error.message else error.message
        why = _HINTS.get(dotted([*path, missing]))
        return [Problem(dotted([*path, missing]), line, "is required" + (f": {why}" if why else ""))]
    if error.validator in ("minLength", "pattern") and isinstance(value, str) and not value.strip():
        return [Problem(name, line, "is empty" + (f"; set {hint}" if hint else ""))]
    if error.validator == "enum":
        options = ", ".join(f"`{o}`" for o in error.validator_value)
        return [Problem(name, line, f"is `{value}`; use {options}")]
    if error.validator == "type":
        return [Problem(name, line, f"is {value!r}; it must be {_shape(error.schema)}" + (f" ({hint})" if hint else ""))]
    if error.validator in ("minimum", "exclusiveMinimum"):
        bound = "at least" if error.validator == "minimum" else "more than"
        return [Problem(name, line, f"is {value!r}; it must be {bound} {error.validator_value}")]
    if hint:
        return [Problem(name, line, f"is {value!r}; it must be {hint}")]
    return [Problem(name, line, f"is {value!r}; it must be {_shape(error.schema)}")]


def check(data: Any, root: Node | None) -> list[Problem]:
    """Every way `data` (read from the YAML whose node tree is `root`) breaks the schema, in file order."""
    validator = jsonschema.Draft7Validator(schema())
    problems = [p for error in validator.iter_errors(data) for p in _problems(error, root)]
    unique = {(p.line, p.path, p.message): p for p in problems}
    return [unique[k] for k in sorted(unique)]


def chart_schema(values_schema: dict[str, Any]) -> dict[str, Any]:
    """The chart's values schema with `config` set to this schema (minus the keys the chart owns)."""
    embedded = schema()
    for meta in ("$schema", "$id", "title"):
        embedded.pop(meta, None)
    embedded["description"] = "fluxbot.yaml (bot/schema/fluxbot.schema.json); the chart sets state_dir itself"
    embedded["properties"] = {k: v for k, v in embedded["properties"].items() if k != "state_dir"}
    # its "#/definitions/..." references resolve from the document's root: put them there
    values_schema.setdefault("definitions", {}).update(embedded.pop("definitions"))
    values_schema["properties"]["config"] = embedded
    return values_schema


def main(argv: list[str]) -> int:
    current = json.loads(CHART_SCHEMA.read_text())
    wanted = json.dumps(chart_schema(json.loads(CHART_SCHEMA.read_text())), indent=2) + "\n"
    if "--write" in argv:
        CHART_SCHEMA.write_text(wanted)
        return 0
    if json.dumps(current, indent=2) + "\n" != wanted:
        print(f"{CHART_SCHEMA} is out of date: run python -m bot.schema --write", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
