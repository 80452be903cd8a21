"""`commands/` is the pure core: it must not import chat, forge, git or cluster clients."""
from __future__ import annotations

import ast
from pathlib import Path

import commands

FORBIDDEN = {"slack_bolt", "slack_sdk", "github", "git", "kubernetes", "bot", "subprocess", "socket", "requests", "urllib"}


def imported_modules(source: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_commands_package_imports_no_adapter() -> None:
    package = Path(commands.__file__).parent
    offenders = {
        str(path.relative_to(package)): sorted(imported_modules(path.read_text()) & FORBIDDEN)
        for path in package.rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_check_itself_catches_a_forbidden_import() -> None:
    assert imported_modules("import git\nfrom kubernetes import client\nfrom slack_bolt.app import App\n") == {
        "git", "kubernetes", "slack_bolt"
    }
