"""Byte-exact scalar edits: every formatting style survives, and unsafe edits are refused."""
from __future__ import annotations

import difflib

import pytest

from commands.model import CommandError
from commands.yamledit import load_documents, replace_scalar

PATH = ("spec", "ref", "tag")

STYLES = {
    "plain": "spec:\n  ref:\n    tag: v0.3.0\n",
    "single-quoted": "spec:\n  ref:\n    tag: 'v0.3.0'\n",
    "double-quoted": 'spec:\n  ref:\n    tag: "v0.3.0"\n',
    "comment on the line": "spec:\n  ref:\n    tag: v0.3.0 # pinned by the platform team\n",
    "comment lines around": "# top\nspec:\n  # the ref\n  ref:\n    tag: v0.3.0\n    # after\n",
    "four-space indent": "spec:\n    ref:\n        tag: v0.3.0\n    interval: 1m\n",
    "flow map": "spec:\n  ref: {tag: v0.3.0}\n  interval: 1m\n",
    "flow map, quoted": "spec: {ref: {tag: \"v0.3.0\"}, interval: 1m}\n",
    "CRLF line endings": "spec:\r\n  ref:\r\n    tag: v0.3.0\r\n  interval: 1m\r\n",
    "no final newline": "spec:\n  ref:\n    tag: v0.3.0",
    "key order": "spec:\n  ref:\n    tag: v0.3.0\n    branch: ''\n  url: x\n",
    "trailing spaces": "spec:  \n  ref:   \n    tag:   v0.3.0   \n",
    "unicode comment": "# Plattform – Übersicht ✓\nspec:\n  ref:\n    tag: v0.3.0  # ✓\n",
}


def changed_lines(before: bytes, after: bytes) -> list[tuple[str, str]]:
    a, b = before.decode().splitlines(keepends=True), after.decode().splitlines(keepends=True)
    assert len(a) == len(b), "an edit must never add or remove lines"
    return [(x, y) for x, y in zip(a, b) if x != y]


@pytest.mark.parametrize("style", STYLES)
def test_only_the_value_changes(style: str) -> None:
    before = STYLES[style].encode()
    after = replace_scalar(before, 0, PATH, "v0.4.0")
    changes = changed_lines(before, after)
    assert len(changes) == 1
    old_line, new_line = changes[0]
    assert new_line == old_line.replace("v0.3.0", "v0.4.0")
    assert after == before.replace(b"v0.3.0", b"v0.4.0")
    assert load_documents(after.decode())[0]["spec"]["ref"]["tag"] == "v0.4.0"


def test_multi_document_file_edits_the_named_document_only() -> None:
    before = (
        "# generated\n---\n# the source\napiVersion: v1\nspec:\n  ref:\n    tag: v0.3.0\n"
        "---\n# the other one\nspec:\n  ref:\n    tag: v0.3.0\n...\n"
    ).encode()
    after = replace_scalar(before, 1, PATH, "v0.2.0")
    docs = load_documents(after.decode())
    assert [d["spec"]["ref"]["tag"] for d in docs] == ["v0.3.0", "v0.2.0"]
    diff = [l for l in difflib.unified_diff(before.decode().splitlines(), after.decode().splitlines(), lineterm="", n=0)
            if l[:1] in "+-" and l[:3] not in ("+++", "---")]
    assert diff == ["-    tag: v0.3.0", "+    tag: v0.2.0"]


def test_crlf_survives_in_every_line() -> None:
    before = b"a: 1\r\n---\r\n# c\r\nspec: {ref: {tag: 'v0.3.0'}}\r\n"
    after = replace_scalar(before, 1, PATH, "v1.0.0")
    assert after == before.replace(b"v0.3.0", b"v1.0.0")
    assert after.count(b"\r\n") == 4


def test_single_quoted_value_with_quote_is_escaped_the_yaml_way() -> None:
    after = replace_scalar(b"spec:\n  ref:\n    tag: 'a'\n", 0, PATH, "it's")
    assert after == b"spec:\n  ref:\n    tag: 'it''s'\n"
    assert load_documents(after.decode())[0]["spec"]["ref"]["tag"] == "it's"


@pytest.mark.parametrize(
    "source, reason",
    [
        ("spec:\n  ref:\n    tag: |\n      v0.3.0\n", "style"),
        ("spec:\n  ref:\n    tag: !!str v0.3.0\n", "style"),
        ("spec:\n  ref:\n    branch: main\n", "missing"),
        ("spec:\n  ref: [v0.3.0]\n", "mapping"),
        ("spec:\n  ref:\n    tag: v0.3.0\n    tag: v0.2.0\n", "duplicated"),
        ("spec: [unclosed\n", "parse"),
    ],
)
def test_refuses_what_it_cannot_edit_exactly(source: str, reason: str) -> None:
    with pytest.raises(CommandError) as error:
        replace_scalar(source.encode(), 0, PATH, "v0.4.0")
    assert reason in error.value.what


@pytest.mark.parametrize("value", ["1.0", "true", "null", "v0.4.0 # x", "a: b", ""])
def test_refuses_a_plain_value_that_would_change_type_or_structure(value: str) -> None:
    with pytest.raises(CommandError):
        replace_scalar(b"spec:\n  ref:\n    tag: v0.3.0\n", 0, PATH, value)


def test_refuses_a_missing_document() -> None:
    with pytest.raises(CommandError, match="no document 3"):
        replace_scalar(b"a: 1\n---\nb: 2\n", 2, PATH, "v1.0.0")


from commands.yamledit import append_item, remove_item  # noqa: E402

KUSTOMIZATION = (
    "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../../../apps/podinfo  # web\n"
    "patches:\n  - path: ./values/podinfo.yaml\n    target:\n      kind: HelmRelease\n      name: podinfo\n"
)


def test_append_a_scalar_to_a_block_list_adds_one_line() -> None:
    after = append_item(KUSTOMIZATION.encode(), 0, ("resources",), "../../../apps/redis").decode()
    assert after == KUSTOMIZATION.replace("# web\n", "# web\n  - ../../../apps/redis\n")


def test_append_a_mapping_keeps_the_list_indentation() -> None:
    source = KUSTOMIZATION.replace("\n  - path", "\n- path").replace("\n    target", "\n  target").replace(
        "\n      kind", "\n    kind").replace("\n      name", "\n    name")
    after = append_item(source.encode(), 0, ("patches",), "path: ./values/redis.yaml\ntarget:\n  name: redis\n").decode()
    assert after.endswith("- path: ./values/redis.yaml\n  target:\n    name: redis\n")


def test_append_to_a_missing_key_and_an_empty_flow_list() -> None:
    source = "kind: Kustomization\nresources: []\n"
    after = append_item(source.encode(), 0, ("resources",), "../a").decode()
    assert after == "kind: Kustomization\nresources:\n  - ../a\n"
    after = append_item(after.encode(), 0, ("patches",), "path: ./v.yaml").decode()
    assert after == "kind: Kustomization\nresources:\n  - ../a\npatches:\n  - path: ./v.yaml\n"


def test_append_keeps_crlf_and_adds_a_missing_final_newline() -> None:
    after = append_item(b"resources:\r\n  - ../a", 0, ("resources",), "../b")
    assert after == b"resources:\r\n  - ../a\r\n  - ../b\r\n"


def test_remove_an_item_and_the_last_item() -> None:
    two = append_item(KUSTOMIZATION.encode(), 0, ("resources",), "../../../apps/redis")
    assert remove_item(two, 0, ("resources",), 0).decode() == KUSTOMIZATION.replace(
        "  - ../../../apps/podinfo  # web\n", "  - ../../../apps/redis\n")
    emptied = remove_item(KUSTOMIZATION.encode(), 0, ("patches",), 0).decode()
    assert emptied.endswith("patches: []\n")
    assert load_documents(emptied)[0]["patches"] == []


def test_flow_lists_with_items_are_refused() -> None:
    with pytest.raises(CommandError, match="flow list"):
        append_item(b"resources: [../a]\n", 0, ("resources",), "../b")


# Hostile repo YAML (#20): alias bombs and deep nesting are refused, edits compare nodes --------


def alias_bomb(levels: int = 9) -> str:
    """Nine anchor lines, about 700 bytes, that expand to 10**9 strings."""
    lines = ['      l0: &l0 "lol"']
    for level in range(1, levels + 1):
        refs = ", ".join([f"*l{level - 1}"] * 10)
        lines.append(f"      l{level}: &l{level} [{refs}]")
    return "\n".join(lines) + "\n"


BOMB_FILE = "spec:\n  ref:\n    tag: v0.3.0\n  postBuild:\n    bomb:\n" + alias_bomb(10)


def test_an_alias_bomb_is_refused_when_read() -> None:
    from commands.repo import documents

    with pytest.raises(ValueError, match="aliases expand to more than"):
        documents(BOMB_FILE.encode())


def test_a_few_aliases_are_fine() -> None:
    from commands.repo import documents

    assert documents(b"a: &x [1, 2]\nb: *x\n")[0] == {"a": [1, 2], "b": [1, 2]}


def test_nesting_20000_deep_is_refused_when_read() -> None:
    from commands.repo import documents

    with pytest.raises(ValueError, match="nested too deeply"):
        documents(("a: " + "[" * 20_000 + "]" * 20_000 + "\n").encode())


def test_an_edit_beside_an_alias_bomb_compares_nodes_without_expanding_them() -> None:
    # `_verify_change` used to compare the expanded data: 10**9 strings. Run where a hang is caught.
    import subprocess
    import sys

    code = ("from tests.commands.test_yamledit import BOMB_FILE\n"
            "from commands.yamledit import replace_scalar\n"
            "out = replace_scalar(BOMB_FILE.encode(), 0, ('spec', 'ref', 'tag'), 'v0.4.0')\n"
            "print(out.decode().splitlines()[2])\n")
    try:
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("the edit expanded the aliases (still comparing after 60 s)")
    assert run.stdout.strip() == "tag: v0.4.0", run.stderr
