"""The package's shape: one-way layers, no import cycles, a cheap `import runlog`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

import runlog

ROOT = Path(__file__).resolve().parents[2]

# What a process that only logs must never pay for (see #11).
HEAVY = ("zstandard", "tarfile", "lzma", "bz2", "difflib", "concurrent.futures")


def _strongly_connected(graph: grimp.ImportGraph) -> list[list[str]]:
    """Tarjan's algorithm over the module graph: every group of mutual importers."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    counter = 0

    def visit(start: str) -> None:
        nonlocal counter
        work = [(start, iter(sorted(graph.find_modules_directly_imported_by(start))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    imported = graph.find_modules_directly_imported_by(child)
                    work.append((child, iter(sorted(imported))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                groups.append(sorted(group))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return groups


def test_no_module_imports_itself_back_through_others() -> None:
    """No import cycle between runlog's modules, type-only imports included."""
    graph = grimp.build_graph("runlog", cache_dir=None)
    cycles = [group for group in _strongly_connected(graph) if len(group) > 1]
    assert cycles == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    """The check above can fail: a graph with a -> b -> a reports one group."""
    graph = grimp.ImportGraph()
    for name in ("pkg", "pkg.a", "pkg.b", "pkg.c"):
        graph.add_module(name)
    graph.add_import(importer="pkg.a", imported="pkg.b")
    graph.add_import(importer="pkg.b", imported="pkg.a")
    graph.add_import(importer="pkg.c", imported="pkg.a")
    assert [g for g in _strongly_connected(graph) if len(g) > 1] == [["pkg.a", "pkg.b"]]


def test_import_linter_contracts_are_kept() -> None:
    """The layer and write-path contracts in pyproject.toml hold (lint-imports)."""
    done = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def _modules_after(code: str, env: dict[str, str] | None = None) -> list[str]:
    program = f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=env,
    )
    loaded: list[str] = json.loads(done.stdout.splitlines()[-1])
    return loaded


@pytest.mark.parametrize(
    "code",
    [
        "import runlog",
        "from runlog import get_logger, configure, LogContext; configure()",
    ],
)
def test_import_runlog_loads_no_archive_pool_or_structlog_modules(code: str) -> None:
    """`import runlog` never imports zstandard, tarfile, lzma, bz2, difflib, pools."""
    loaded = _modules_after(code)
    assert [name for name in (*HEAVY, "structlog") if name in loaded] == []


def test_logging_a_record_loads_only_the_write_path() -> None:
    """A process that logs loads structlog, but no archive, summary or reading code.

    (structlog itself imports asyncio, which imports concurrent.futures.)
    """
    code = "import runlog; runlog.get_logger(__name__, component='adapter').info('x')"
    loaded = _modules_after(code)
    assert "structlog" in loaded
    assert [name for name in HEAVY[:-1] if name in loaded] == []
    above = ("runlog.archive", "runlog.reading", "runlog.summary", "runlog.run")
    assert [name for name in loaded if name.startswith(above)] == []


def test_the_heavy_names_still_load_on_first_use() -> None:
    """runlog.Archiver and runlog.start_run work and bring their modules with them."""
    loaded = _modules_after("import runlog; runlog.Archiver; runlog.start_run")
    assert "zstandard" in loaded
    assert "runlog.archive._archiver" in loaded
    assert "runlog.run._start" in loaded


def test_every_public_name_resolves_and_is_listed() -> None:
    """Each name in runlog.__all__ resolves; dir() lists the lazy ones too."""
    for name in runlog.__all__:
        assert getattr(runlog, name) is not None, name
    assert set(runlog.__all__) <= set(dir(runlog))
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = runlog.no_such_name  # type: ignore[attr-defined]


def test_importing_runlog_joins_no_run_until_first_use(tmp_path: Path) -> None:
    """RUNLOG_* variables are read at the first use of the context, not at import."""
    logs = tmp_path / "runs" / "fw" / "r1" / "logs"
    env = {
        "PATH": "/usr/bin:/bin",
        "RUNLOG_LOGS_DIR": str(logs),
        "RUNLOG_RUN_ID": "r1",
        "RUNLOG_FRAMEWORK": "fw",
        "RUNLOG_OWNER_PID": "1",
    }
    code = (
        "import os, runlog\n"
        "made = os.path.exists(os.environ['RUNLOG_LOGS_DIR'])\n"
        "print('made at import' if made else 'nothing at import')\n"
        "runlog.get_logger('child', component='adapter').info('hello')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=env,
        cwd=ROOT,
    )
    assert done.stdout == "nothing at import\n"
    assert (logs / "run.log").read_text().count('"event":"hello"') == 1
