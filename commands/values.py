"""`set key=value ...` in chat: keys, values and the YAML written for them.

Values are strings unless typed explicitly, like Helm's `--set-string`: `tag=1.10` writes the
string "1.10", never the number 1.1, and `flag=on` the string "on", never YAML 1.1's boolean.
`key:=<json>` types a value (`replicas:=3`, `enabled:=false`, `hosts:=["a","b"]`). A key is
names joined by dots; a name with other characters is double-quoted: `podAnnotations."a/b"=c`.
"""
from __future__ import annotations

import io
import json
import re
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from commands.model import CommandError
from commands.yamledit import nesting_exceeds

_NAME = r'[A-Za-z_][A-Za-z0-9_-]*'
_SEGMENT = rf'(?:{_NAME}|"[^"]+")'
_DOTTED = re.compile(rf"^{_SEGMENT}(?:\.{_SEGMENT})*$")
_FLAT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SEGMENTS = re.compile(rf'{_NAME}|"([^"]+)"')
_CURLY = str.maketrans({"\u201c": '"', "\u201d": '"'})  # Slack's smart quotes
_YAML_SYNTAX = ("!", "&", "*")
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_./-]*$")
_YAML11_SPECIAL = re.compile(r"^(?:y|n|yes|no|on|off|true|false|null|~)$", re.IGNORECASE)
MAX_DEPTH = 20  # nesting of a typed value

KEY_RULE = ('a key is names of letters, digits, `_` and `-` joined by dots; put a name with other '
            'characters in double quotes, like `podAnnotations."a/b"=c`')


def split_setting(word: str) -> tuple[str, str, bool]:
    """`a."b=c".d=x` -> ('a."b=c".d', 'x', typed?): the first `=` outside quotes ends the key."""
    word = word.translate(_CURLY)
    quoted = False
    for at, char in enumerate(word):
        if char == '"':
            quoted = not quoted
        elif char == "=" and not quoted:
            key, value = word[:at], word[at + 1:]
            typed = key.endswith(":")
            return (key[:-1] if typed else key), value, typed
    if quoted:
        raise CommandError(f"`{word[:80]}` has a `\"` that is not closed", KEY_RULE)
    raise CommandError(f"`{word}` is not a `key=value` setting", "write settings as `set name=value name2=value2`")


def key_path(key: str) -> tuple[str, ...]:
    """`a."b/c".d` -> ('a', 'b/c', 'd'), or a refusal saying what a key may be."""
    if not _DOTTED.match(key):
        raise CommandError(f"`{key}` is not a key", KEY_RULE)
    return tuple(m.group(1) if m.group(1) is not None else m.group(0) for m in _SEGMENTS.finditer(key))


def parse_value(key: str, text: str, typed: bool) -> Any:
    """A string, or with `:=` the JSON value; YAML syntax and deep nesting are refused by name."""
    if not typed:
        if text.startswith(_YAML_SYNTAX):
            raise CommandError(
                f"`{text}` is YAML syntax (a tag, anchor or alias), not a value for `{key}`",
                f"values are written as strings; for exactly that text write `{key}:={json.dumps(text)}`",
            )
        return text
    # Counted before parsing: json's RecursionError on deep input upsets CPython's AST depth count (< 3.11.5).
    if nesting_exceeds(text, MAX_DEPTH):
        raise CommandError(f"the value of `{key}` is nested deeper than {MAX_DEPTH} levels", "set a flatter value")
    try:
        value = json.loads(text)
    except RecursionError:
        raise CommandError(f"the value of `{key}` is nested deeper than {MAX_DEPTH} levels", "set a flatter value") from None
    except ValueError:
        raise CommandError(
            f"`{text}` after `:=` is not JSON",
            f"`:=` takes JSON (`{key}:=3`, `{key}:=false`, `{key}:=[\"a\"]`); for a string write `{key}={text}`",
        ) from None
    if _depth(value) > MAX_DEPTH:
        raise CommandError(f"the value of `{key}` is nested deeper than {MAX_DEPTH} levels", "set a flatter value")
    return value


def _depth(value: Any) -> int:
    deepest, todo = 0, [(value, 1)]
    while todo:
        node, level = todo.pop()
        deepest = max(deepest, level)
        if level > MAX_DEPTH:
            break
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        todo += [(child, level + 1) for child in children]
    return deepest


def parse_values(words: list[str]) -> tuple[tuple[tuple[str, ...], Any], ...]:
    """Helm values: `a.b=x c:=3` -> ((('a', 'b'), 'x'), (('c',), 3))."""
    out = []
    for word in words:
        key, text, typed = split_setting(word)
        out.append((key_path(key), parse_value(key, text, typed)))
    return tuple(out)


def parse_variables(words: list[str]) -> tuple[tuple[str, str], ...]:
    """Flux substitution variables: flat names, string values (`postBuild.substitute` takes strings)."""
    out = []
    for word in words:
        key, text, typed = split_setting(word)
        if typed or not _FLAT.match(key):
            raise CommandError(
                f"`{word}` is not a `name=value` setting",
                "a Flux variable name has letters, digits and `_` (like `meta_network_zone`), and its value is a string",
            )
        out.append((key, text))
    return tuple(out)


def values_tree(values: tuple[tuple[tuple[str, ...], Any], ...]) -> dict[str, Any]:
    """Nested mappings from key paths; a key set both as a value and as a parent is refused."""
    tree: dict[str, Any] = {}
    for path, value in values:
        node = tree
        for key in path[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise CommandError(f"`{'.'.join(path)}` sets inside `{key}`, which is already given a value")
            node = child
        node[path[-1]] = value
    return tree


def dump_yaml(data: Any) -> str:
    """Block YAML, in the indentation Flux repos use."""
    out = io.StringIO()
    writer = YAML()
    writer.default_flow_style = False
    writer.indent(mapping=2, sequence=4, offset=2)
    writer.dump(data, out)
    return out.getvalue()


def quoted(data: Any) -> Any:
    """`data` with every string (and every key YAML 1.1 would not read as one) double-quoted,
    so YAML 1.1 readers (Helm, Flux's controllers) read strings too."""
    if isinstance(data, dict):
        return {_key(k): quoted(v) for k, v in data.items()}
    if isinstance(data, list):
        return [quoted(v) for v in data]
    if isinstance(data, str):
        return DoubleQuotedScalarString(data)
    return data


def _key(key: str) -> str:
    return key if _PLAIN_KEY.match(key) and not _YAML11_SPECIAL.match(key) else DoubleQuotedScalarString(key)
