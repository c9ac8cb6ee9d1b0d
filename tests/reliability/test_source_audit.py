"""The library's source has none of the habits that make logging fail silently."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.reliability._checks import REPO

pytestmark = pytest.mark.reliability

SOURCES = sorted((REPO / "runlog").glob("*.py"))
BROAD = {"Exception", "BaseException"}


def parsed(path: Path) -> tuple[ast.Module, list[str]]:
    """The module's syntax tree and its lines."""
    text = path.read_text(encoding="utf-8")
    return ast.parse(text, filename=str(path)), text.splitlines()


def where(path: Path, node: ast.AST) -> str:
    """``runlog/x.py:12`` for *node*."""
    return f"{path.relative_to(REPO)}:{getattr(node, 'lineno', 0)}"


def _names(node: ast.expr | None) -> set[str]:
    if node is None:
        return {"<bare>"}
    items = node.elts if isinstance(node, ast.Tuple) else [node]
    return {i.id if isinstance(i, ast.Name) else ast.unparse(i) for i in items}


def test_broad_excepts_re_raise_or_say_why() -> None:
    """
    No bare ``except:``; an ``except Exception`` either re-raises or carries
    ``noqa: BLE001`` with its reason; no handler is only ``pass``.
    """
    problems = []
    for path in SOURCES:
        tree, lines = parsed(path)
        for node in ast.walk(tree):
            if not isinstance(node, ast.ExceptHandler):
                continue
            caught = _names(node.type)
            if "<bare>" in caught:
                problems.append(f"{where(path, node)} bare except")
            reraises = any(isinstance(n, ast.Raise) for n in ast.walk(node))
            if caught & BROAD and not reraises:
                line = lines[node.lineno - 1]
                reason = line.partition("noqa: BLE001")[2].strip(" #")
                if not reason:
                    problems.append(f"{where(path, node)} swallows {caught}")
            if all(isinstance(s, ast.Pass) for s in node.body):
                problems.append(f"{where(path, node)} except ...: pass")
    assert problems == []


def test_library_code_never_prints() -> None:
    """Only the CLI prints; the library reports through errors and warnings."""
    found = [
        where(path, node)
        for path in SOURCES
        if path.name not in ("cli.py",)
        for node in ast.walk(parsed(path)[0])
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "print"
    ]
    assert found == []


def test_no_finalizers() -> None:
    """No ``__del__``: nothing is written at garbage collection time."""
    found = [
        where(path, node)
        for path in SOURCES
        for node in ast.walk(parsed(path)[0])
        if isinstance(node, ast.FunctionDef) and node.name == "__del__"
    ]
    assert found == []


NAIVE_CALLS = {
    "utcnow",
    "utcfromtimestamp",
    "today",
    "localtime",
    "mktime",
}


def test_no_naive_or_local_times() -> None:
    """
    Every time is aware UTC: no ``datetime.now()`` / ``fromtimestamp()``
    without a zone, no ``utcnow()``, ``today()``, ``localtime()``, ``mktime()``.
    """
    problems = []
    for path in SOURCES:
        for node in ast.walk(parsed(path)[0]):
            if not isinstance(node, ast.Call) or not isinstance(
                node.func, ast.Attribute
            ):
                continue
            name = node.func.attr
            if name in NAIVE_CALLS:
                problems.append(f"{where(path, node)} {name}()")
            if name in ("now", "fromtimestamp") and ast.unparse(node.func.value) in (
                "datetime",
                "datetime.datetime",
            ):
                zone = node.args[1:] if name == "fromtimestamp" else node.args
                if not zone and not any(k.arg == "tz" for k in node.keywords):
                    problems.append(f"{where(path, node)} naive {name}()")
    assert problems == []
