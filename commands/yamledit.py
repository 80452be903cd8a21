"""Byte-exact edits of one scalar in a YAML file.

The scalar is located through ruamel.yaml's node marks (character offsets into the stream), and
only its characters are replaced, so comments, quoting, indentation, flow style, document
separators, CRLF line endings and a missing final newline all survive. The result is parsed again
and compared with the original; anything but the one intended change is refused.
"""
from __future__ import annotations

import re
from typing import Any, Sequence

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.nodes import MappingNode, ScalarNode

from commands.model import CommandError, FileEdit

_PLAIN_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/+-]*$")
_RESOLVES_TO_NON_STRING = re.compile(
    r"^(?:[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)?|true|false|yes|no|on|off|null|~)$",
    re.IGNORECASE,
)


def decode(raw: bytes) -> str:
    """Decode a YAML file without translating line endings."""
    return raw.decode("utf-8")


def load_documents(text: str) -> list[Any]:
    """All documents of a YAML stream as plain Python data (`None` for empty documents)."""
    return list(YAML(typ="safe", pure=True).load_all(text))


def read_scalar(raw: bytes, document: int, key_path: Sequence[str]) -> object:
    """The value at `key_path` of document `document`, or None when the file has none there."""
    try:
        node: Any = load_documents(decode(raw))[document]
        for key in key_path:
            node = node[key]
    except (YAMLError, UnicodeDecodeError, IndexError, KeyError, TypeError):
        return None
    return node


def rebase_edit(edit: FileEdit, current: bytes | None) -> bytes:
    """The edit's new content on top of `current`, the file as it is now on the default branch.

    Unchanged file: the planned bytes. Changed elsewhere: the same value edit, re-applied. The
    value itself changed by someone else: a conflict, refused.
    """
    if current == edit.before:
        return edit.after
    scalar = edit.scalar
    if scalar is None or current is None:
        raise CommandError(f"{edit.path} changed on the default branch since the change was planned")
    found = read_scalar(current, scalar.document, scalar.key_path)
    if found != scalar.old:
        raise CommandError(
            f"someone changed `{'.'.join(scalar.key_path)}` in {edit.path} to `{found}` meanwhile (fluxbot expected `{scalar.old}`)",
            "check the latest state with `status`, then ask again",
        )
    return replace_scalar(current, scalar.document, scalar.key_path, scalar.new)


def replace_scalar(raw: bytes, document: int, key_path: Sequence[str], new_value: str) -> bytes:
    """Return `raw` with the string at `key_path` of document `document` set to `new_value`."""
    text = decode(raw)
    node = _locate(text, document, key_path)
    start, end = node.start_mark.index, node.end_mark.index
    replacement = _render_like(node, text[start:end], new_value)
    result = text[:start] + replacement + text[end:]
    _verify(text, result, document, key_path, new_value)
    return result.encode("utf-8")


def _locate(text: str, document: int, key_path: Sequence[str]) -> ScalarNode:
    try:
        documents = list(YAML().compose_all(text))
    except YAMLError as exc:
        raise CommandError(f"cannot parse the YAML file: {exc.__class__.__name__}") from None
    if document >= len(documents):
        raise CommandError(f"the YAML file has no document {document + 1}")
    node: Any = documents[document]
    for key in key_path:
        if not isinstance(node, MappingNode):
            raise CommandError(f"`{'.'.join(key_path)}` is not a mapping path in the file")
        matches = [value for k, value in node.value if isinstance(k, ScalarNode) and k.value == key]
        if len(matches) != 1:
            raise CommandError(f"`{'.'.join(key_path)}` is missing or duplicated in the file")
        node = matches[0]
    if not isinstance(node, ScalarNode) or node.tag.endswith(("!!merge", "alias")):
        raise CommandError(f"`{'.'.join(key_path)}` is not a plain value that can be edited exactly")
    return node


def _render_like(node: ScalarNode, source: str, value: str) -> str:
    """Write `value` in the same quoting style as the scalar it replaces."""
    style = node.style
    if style == "'" and source.startswith("'"):
        return "'" + value.replace("'", "''") + "'"
    if style == '"' and source.startswith('"'):
        if any(c in value for c in '"\\') or not value.isprintable():
            raise CommandError(f"cannot write {value!r} into a double-quoted value exactly")
        return '"' + value + '"'
    if style in (None, "") and source == node.value:
        if not _PLAIN_SAFE.match(value) or _RESOLVES_TO_NON_STRING.match(value):
            raise CommandError(f"{value!r} would not stay a string as a plain YAML value")
        return value
    raise CommandError("the value uses a YAML style (block scalar, tag or escape) fluxbot does not rewrite")


def _verify(before: str, after: str, document: int, key_path: Sequence[str], value: str) -> None:
    """Parse both versions and insist that exactly the intended value changed."""
    expected = load_documents(before)
    target = expected[document]
    for key in key_path[:-1]:
        target = target[key]
    target[key_path[-1]] = value
    try:
        actual = load_documents(after)
    except YAMLError:
        actual = None
    if actual != expected:
        raise CommandError("the edited file would not parse back to the intended change; nothing was written")
