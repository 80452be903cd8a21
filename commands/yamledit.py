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
from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode

from commands.model import CommandError, FileEdit

_PLAIN_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/+-]*$")
_RESOLVES_TO_NON_STRING = re.compile(
    r"^(?:[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)?|true|false|yes|no|on|off|null|~)$",
    re.IGNORECASE,
)


def decode(raw: bytes) -> str:
    """Decode a YAML file without translating line endings."""
    return raw.decode("utf-8")


MAX_ALIAS_EXPANSION = 10_000  # values aliases may add to a document; legitimate files add a handful
MAX_NESTING = 200  # Kubernetes objects (CRD schemas included) nest a few dozen levels at most


class UnsafeYAML(YAMLError):
    """YAML fluxbot refuses to read: an alias bomb, a cycle, or nesting too deep to handle."""


def load_documents(text: str) -> list[Any]:
    """All documents of a YAML stream as plain Python data (`None` for empty documents).

    Aliases share one Python object, so reading a bomb is cheap; comparing or serialising it is
    not. Documents whose aliases expand beyond a small bound, or that nest too deeply, are refused.
    """
    # The C parser (ruamel.yaml.clib) when installed; ruamel falls back to pure Python otherwise.
    _refuse_deep_flow(text)
    try:
        documents = list(YAML(typ="safe").load_all(text))
    except RecursionError:
        raise UnsafeYAML(f"the YAML is nested too deeply (fluxbot reads at most {MAX_NESTING} levels)") from None
    for document in documents:
        check_shape(document)
    return documents


def check_shape(data: Any) -> None:
    """Refuse data whose aliases expand too far, that refers to itself, or nests too deeply.

    One walk over the distinct objects (shared ones once), without recursion.
    """
    memo: dict[int, tuple[int, int] | None] = {}  # id -> (expanded size, depth); None while on the path
    distinct = 0
    stack: list[tuple[Any, bool]] = [(data, False)]
    while stack:
        node, finished = stack.pop()
        children = list(node.keys()) + list(node.values()) if isinstance(node, dict) else node
        if not finished:
            if id(node) in memo:
                continue
            memo[id(node)] = None
            distinct += 1 + len(children)
            stack.append((node, True))
            stack += [(c, False) for c in children if isinstance(c, (dict, list)) and id(c) not in memo]
            continue
        size, depth = 1, 0
        for child in children:
            if isinstance(child, (dict, list)):
                seen = memo.get(id(child))
                if seen is None:
                    raise UnsafeYAML("the YAML refers to itself through an alias; fluxbot refuses recursive YAML")
                size, depth = size + seen[0], max(depth, seen[1])
            else:
                size += 1
        memo[id(node)] = (size, depth + 1)
        if depth + 1 > MAX_NESTING:
            raise UnsafeYAML(f"the YAML is nested too deeply (fluxbot reads at most {MAX_NESTING} levels)")
        if size - distinct > MAX_ALIAS_EXPANSION:
            raise UnsafeYAML(f"its aliases expand to more than {MAX_ALIAS_EXPANSION:,} extra values "
                             "(an alias bomb?); fluxbot refuses such YAML")


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
    _verify_change(before, after, document, key_path, lambda _old: value)


# Sequences and keys -------------------------------------------------------------------------
# The same discipline as `replace_scalar`: locate with ruamel's marks, touch only the lines of
# the item, and insist on re-parse that the data changed exactly as intended.


def _newline(text: str) -> str:
    return "\r\n" if "\r\n" in text else "\n"


def _line_end(text: str, index: int) -> int:
    """The index just after the line break that ends the line holding `index - 1`."""
    if index > 0 and text[index - 1] == "\n":
        return index
    found = text.find("\n", index)
    return len(text) if found < 0 else found + 1


def _node_at(text: str, document: int, key_path: Sequence[str]) -> Any:
    documents = list(YAML().compose_all(text))
    node: Any = documents[document]
    for key in key_path:
        matches = [v for k, v in node.value if isinstance(k, ScalarNode) and k.value == key] if isinstance(node, MappingNode) else []
        if len(matches) != 1:
            return None
        node = matches[0]
    return node


def _indented(item: str, indent: int, newline: str) -> str:
    lines = item.rstrip("\n").split("\n")
    pad = " " * indent
    return newline.join([f"{pad}- {lines[0]}"] + [f"{pad}  {line}" if line else "" for line in lines[1:]]) + newline


def append_item(raw: bytes, document: int, key_path: Sequence[str], item: str) -> bytes:
    """Append `item` (the YAML text of one value) to the sequence at `key_path`.

    A missing key is added at the end of the document as a block sequence.
    """
    text = decode(raw)
    newline = _newline(text)
    node = _node_at(text, document, key_path)
    value = YAML(typ="safe", pure=True).load(item)
    if node is None:
        parent = _node_at(text, document, key_path[:-1])
        if not isinstance(parent, MappingNode):
            raise CommandError(f"`{'.'.join(key_path[:-1]) or 'the document'}` is not a mapping")
        indent = parent.value[0][0].start_mark.column if parent.value else 0
        at = _line_end(text, parent.end_mark.index)
        prefix = "" if at == 0 or text[at - 1] == "\n" else newline
        block = f"{' ' * indent}{key_path[-1]}:{newline}" + _indented(item, indent + 2, newline)
        result = text[:at] + prefix + block + text[at:]
    elif not isinstance(node, SequenceNode):
        raise CommandError(f"`{'.'.join(key_path)}` is not a list")
    elif node.flow_style:
        if node.value:
            raise CommandError(f"`{'.'.join(key_path)}` is a flow list (`[...]`) fluxbot does not extend; use a block list")
        # An empty flow list (`resources: []`, as `app remove` leaves it) becomes a block list.
        start = node.start_mark.index
        while start > 0 and text[start - 1] == " ":
            start -= 1
        key_column = _key_column(text, start)
        result = text[:start] + newline + _indented(item, key_column + 2, newline).rstrip("\r\n") + text[node.end_mark.index:]
    else:
        last = node.value[-1]
        dash = text.rfind("-", 0, last.start_mark.index)
        indent = dash - (text.rfind("\n", 0, dash) + 1)
        at = _line_end(text, last.end_mark.index)
        prefix = "" if text[at - 1:at] == "\n" else newline
        result = text[:at] + prefix + _indented(item, indent, newline) + text[at:]
    _verify_change(text, result, document, key_path, lambda seq: (seq or []) + [value])
    return result.encode("utf-8")


def remove_item(raw: bytes, document: int, key_path: Sequence[str], index: int) -> bytes:
    """Remove item `index` of the block sequence at `key_path`, with its lines."""
    text = decode(raw)
    node = _node_at(text, document, key_path)
    if not isinstance(node, SequenceNode) or node.flow_style or not 0 <= index < len(node.value):
        raise CommandError(f"`{'.'.join(key_path)}` has no item {index + 1} that fluxbot can remove exactly")
    item = node.value[index]
    dash = text.rfind("-", 0, item.start_mark.index)
    start = text.rfind("\n", 0, dash) + 1
    end = _line_end(text, item.end_mark.index)
    if len(node.value) == 1:
        # The list becomes empty: `key: []`, so it stays a list rather than turning into null.
        colon = text.rfind(":", 0, start)
        result = text[:colon + 1] + " []" + _newline(text) + text[end:]
    else:
        result = text[:start] + text[end:]
    _verify_change(text, result, document, key_path, lambda seq: seq[:index] + seq[index + 1:])
    return result.encode("utf-8")


def _key_column(text: str, index: int) -> int:
    line_start = text.rfind("\n", 0, index) + 1
    line = text[line_start:index]
    return len(line) - len(line.lstrip(" "))


def _verify_change(before: str, after: str, document: int, key_path: Sequence[str], change: Any) -> None:
    """Insist that `after` parses to `before` with only the value at `key_path` changed by `change`.

    Compared node by node (aliases are one shared node, so each pair is compared once): an alias
    bomb elsewhere in the file costs its size in the file, never its expansion. Only the changed
    value is built as data, and its shape is bounded like any repo YAML.
    """
    try:
        old_docs, new_docs = _compose(before), _compose(after)
        equal = len(old_docs) == len(new_docs) and all(
            _changed_only(old, new, key_path, change) if index == document else _same_nodes(old, new)
            for index, (old, new) in enumerate(zip(old_docs, new_docs)))
    except YAMLError as exc:
        raise CommandError(f"the edited file would not parse back to the intended change ({str(exc).splitlines()[0]}); "
                           "nothing was written") from None
    if not equal:
        raise CommandError("the edited file would not parse back to the intended change; nothing was written")


def _refuse_deep_flow(text: str | bytes) -> None:
    """Refuse flow collections nested past MAX_NESTING before parsing: the parser would end in a
    RecursionError, which on CPython before 3.11.5 leaves the interpreter's AST depth count wrong."""
    if nesting_exceeds(text, MAX_NESTING):
        raise UnsafeYAML(f"the YAML is nested too deeply (fluxbot reads at most {MAX_NESTING} levels)")


def nesting_exceeds(text: str | bytes, limit: int) -> bool:
    """Whether `[`/`{` nest deeper than `limit`, counted without parsing (brackets inside strings
    count too: only more caution). Parsers recurse, and their RecursionError must not happen."""
    data = text.encode() if isinstance(text, str) else text
    depth = 0
    for byte in data:
        if byte in b"[{":
            depth += 1
            if depth > limit:
                return True
        elif byte in b"]}" and depth:
            depth -= 1
    return False


def _compose(text: str) -> list[Any]:
    _refuse_deep_flow(text)
    try:
        return list(YAML().compose_all(text))
    except RecursionError:
        raise UnsafeYAML(f"the YAML is nested too deeply (fluxbot reads at most {MAX_NESTING} levels)") from None


def _tag(node: Any) -> str:
    return str(getattr(node.tag, "value", node.tag))


def _same_nodes(a: Any, b: Any) -> bool:
    """Structural equality of two node graphs; each pair of nodes is compared at most once."""
    seen: set[tuple[int, int]] = set()
    todo = [(a, b)]
    while todo:
        x, y = todo.pop()
        if (id(x), id(y)) in seen:
            continue
        seen.add((id(x), id(y)))
        if x is None or y is None:
            if x is not y:
                return False
            continue
        if type(x) is not type(y) or _tag(x) != _tag(y):
            return False
        if isinstance(x, ScalarNode):
            if x.value != y.value:
                return False
        elif isinstance(x, MappingNode):
            if len(x.value) != len(y.value):
                return False
            todo += [pair for (kx, vx), (ky, vy) in zip(x.value, y.value) for pair in ((kx, ky), (vx, vy))]
        else:
            if len(x.value) != len(y.value):
                return False
            todo += list(zip(x.value, y.value))
    return True


def _value_at(node: Any, key: str) -> Any:
    matches = [v for k, v in node.value if isinstance(k, ScalarNode) and k.value == key]
    return matches[0] if len(matches) == 1 else None


def _changed_only(old: Any, new: Any, key_path: Sequence[str], change: Any) -> bool:
    """`new` equals `old` except the value at `key_path`, which is `change(old value)`."""
    for depth, key in enumerate(key_path):
        if not isinstance(old, MappingNode) or not isinstance(new, MappingNode):
            return False
        others_old = [(k, v) for k, v in old.value if not (isinstance(k, ScalarNode) and k.value == key)]
        others_new = [(k, v) for k, v in new.value if not (isinstance(k, ScalarNode) and k.value == key)]
        if len(others_old) != len(others_new) or not all(
                _same_nodes(ko, kn) and _same_nodes(vo, vn) for (ko, vo), (kn, vn) in zip(others_old, others_new)):
            return False
        old, new = _value_at(old, key), _value_at(new, key)
        if new is None or (old is None and depth < len(key_path) - 1):
            return False
    return _construct(new) == change(_construct(old) if old is not None else None)


def _construct(node: Any) -> Any:
    value = YAML(typ="safe", pure=True).constructor.construct_document(node)
    check_shape(value)
    return value
