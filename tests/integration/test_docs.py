"""README.md and docs/ run as written: code, commands, outputs, API names (see #14)."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson
import pytest

from runlog._records import LEVEL_NUMBERS, RESERVED_KEYS

REPO = Path(__file__).resolve().parents[2]
DOCS = (REPO / "README.md", *sorted((REPO / "docs").glob("*.md")))
API = REPO / "docs" / "API.md"
LNAV = REPO / "docs" / "lnav" / "runlog.json"
SAMPLES = REPO / "sample_runs"
# first-line markers of ```python blocks: fragments on purpose, and pytest files
NOT_RUN = "# not run:"
WITH_PYTEST = "# run with pytest"
MAX_NOT_RUN = 6  # a few recipes need what the test machine lacks; keep it so
PUBLIC_MODULES = (
    "runlog",
    "runlog.testing",
    "runlog.run",
    "runlog.summary",
    "runlog.archive",
    "runlog.remote",
    "runlog.otel",
    "runlog.dask",
    "runlog.cli",
)
RUN_ID = re.compile(r"\b\d{8}T\d{6}Z-[0-9a-f]{6}\b")
HUMAN_LINE = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.]+Z \w+ +\[[\w.-]+\] step=")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
# pages other people own that still quote the specification (see #14); strict
# xfail, so fixing one makes its test fail until it is taken off this list
CITES_SPEC: frozenset[str] = frozenset()
# (page, first line) of blocks that do not run yet on pages owned elsewhere
BROKEN_BLOCKS: frozenset[tuple[str, str]] = frozenset()


@dataclass(frozen=True)
class Block:
    """One fenced code block of a Markdown page."""

    path: Path
    line: int
    lang: str
    text: str
    heading: str

    @property
    def name(self) -> str:
        """``PAGE.md:LINE`` of the opening fence."""
        return f"{self.path.name}:{self.line}"

    @property
    def first_line(self) -> str:
        """The block's first line, stripped."""
        return self.text.split("\n", 1)[0].strip()


@cache
def blocks_of(path: Path) -> tuple[Block, ...]:
    """Every fenced block of *path*, dedented, with the heading above it."""
    found = []
    heading = ""
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = re.fullmatch(r"( *)```([\w+-]*)\s*", lines[i])
        if opening is None:
            if lines[i].startswith("#"):
                heading = lines[i].lstrip("#").strip()
            i += 1
            continue
        indent = len(opening.group(1))
        body = []
        i += 1
        while not re.fullmatch(r" *```\s*", lines[i]):
            body.append(lines[i][indent:])
            i += 1
        text = "\n".join(body) + "\n"
        found.append(Block(path, i - len(body), opening.group(2), text, heading))
        i += 1
    return tuple(found)


def all_blocks(lang: str) -> list[Block]:
    """The blocks tagged *lang* in README.md and docs/*.md."""
    return [b for page in DOCS for b in blocks_of(page) if b.lang == lang]


def python_params(kind: str) -> list[Any]:
    """The ```python blocks of one *kind*: "script", "pytest" or "not run"."""
    params = []
    for block in all_blocks("python"):
        marker = "script"
        if block.first_line.startswith(NOT_RUN):
            marker = "not run"
        elif block.first_line == WITH_PYTEST:
            marker = "pytest"
        if marker != kind:
            continue
        marks = []
        if (block.path.name, block.first_line) in BROKEN_BLOCKS:
            marks.append(pytest.mark.xfail(reason="fragment on a page owned elsewhere"))
        params.append(pytest.param(block, id=block.name, marks=marks))
    return params


def clean_env() -> dict[str, str]:
    """This environment without a run to join and without colors."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNLOG_")}
    env["NO_COLOR"] = "1"
    return env


def run_python(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` in a fresh interpreter under *cwd*."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def statuses(directory: Path) -> dict[str, str]:
    """The status in each ``run.json`` under *directory*, by its run directory."""
    return {
        str(p.parent.parent.relative_to(directory)): json.loads(p.read_text())["status"]
        for p in directory.rglob("logs/run.json")
    }


def lines_match(expected: list[str], actual: list[str]) -> bool:
    """True if *actual* is *expected*, where a ``...`` line stands for any lines."""
    if not expected:
        return not actual
    if expected[0] == "...":
        return any(
            lines_match(expected[1:], actual[i:]) for i in range(len(actual) + 1)
        )
    return (
        bool(actual)
        and expected[0] == actual[0]
        and lines_match(expected[1:], actual[1:])
    )


def sample_run() -> Path:
    """The one run checked in under sample_runs/demo/."""
    (run,) = (p for p in (SAMPLES / "demo").iterdir() if p.is_dir())
    return run


def section(text: str, heading: str) -> str:
    """The Markdown of *text* from the line *heading* to the next heading as high."""
    start = text.index(heading + "\n")
    level = heading.split(" ", 1)[0]
    rest = text[start + len(heading) :]
    end = re.search(rf"^{level} ", rest, re.MULTILINE)
    return text[start : start + len(heading) + (end.start() if end else len(rest))]


def slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


# --- code blocks -----------------------------------------------------------


@pytest.mark.parametrize("block", python_params("script"))
def test_python_block_runs_as_written(block: Block, tmp_path: Path) -> None:
    """Each ```python block runs in a fresh interpreter; the runs it makes succeed."""
    script = tmp_path / "doc_block.py"
    script.write_text(block.text, encoding="utf-8")

    result = run_python([str(script)], tmp_path)

    assert result.returncode == 0, f"{block.name} failed:\n{result.stderr}"
    failed = {run: s for run, s in statuses(tmp_path).items() if s != "success"}
    assert not failed, f"{block.name} left runs that did not succeed: {failed}"


@pytest.mark.parametrize("block", python_params("pytest"))
def test_pytest_block_passes(block: Block, tmp_path: Path) -> None:
    """Each ```python block marked to run with pytest passes, every test of it."""
    pytest.importorskip("runlog.testing")
    plugin_args: list[str] = []
    entry_points = {ep.value for ep in metadata.entry_points(group="pytest11")}
    if not any(value.startswith("runlog") for value in entry_points):
        # a checkout installed before the entry point existed: load it by name
        plugin_args = ["-p", "runlog.integrations.pytest_plugin"]
    (tmp_path / "test_doc_block.py").write_text(block.text, encoding="utf-8")

    result = run_python(
        ["-m", "pytest", "-q", "-p", "no:cacheprovider", *plugin_args], tmp_path
    )

    assert result.returncode == 0, f"{block.name}:\n{result.stdout}\n{result.stderr}"
    assert re.search(r"\b\d+ passed\b", result.stdout), result.stdout


def test_blocks_not_run_say_why_and_stay_few() -> None:
    """A ```python block left unrun gives its reason, and there are only a few."""
    skipped = [p.values[0] for p in python_params("not run")]

    reasons = {b.name: b.first_line.removeprefix(NOT_RUN).strip() for b in skipped}
    assert all(len(reason) > 5 for reason in reasons.values()), reasons
    assert len(skipped) <= MAX_NOT_RUN, sorted(reasons)


def test_readme_opens_with_install_and_the_two_commands() -> None:
    """The README's first section installs runlog and gives scripts/demo and test."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    first = re.search(r"^## .*", readme, re.MULTILINE)

    assert first is not None and first.group(0) == "## Install"
    install = section(readme, "## Install")
    assert "pip install" in install and ".whl" in install and "git+" in install
    for script in ("demo", "test"):
        assert f"bash scripts/{script}" in install
        assert (REPO / "scripts" / script).is_file()


def test_readme_quick_start_commands_run_against_a_demo_run(tmp_path: Path) -> None:
    """The README quick start's shell lines run as written; each runlog call prints."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    quick = section(readme, "## Quick start")
    (shell,) = [
        b
        for b in blocks_of(REPO / "README.md")
        if b.lang == "bash" and b.heading == "Quick start"
    ]
    calls = [ln for ln in shell.text.splitlines() if ln.startswith("runlog ")]
    script = (
        "set -euo pipefail\n"
        # each call must succeed and print something: a filter matching
        # nothing exits 0 with an empty stdout, which would pass unseen
        'runlog() { out=$("$PYTHON" -m runlog "$@"); [ -n "$out" ] || '
        '{ echo "runlog $*: printed nothing" >&2; return 1; }; '
        'printf "%s\\n" "$out"; echo "$*" >> calls.txt; }\n' + shell.text
    )
    env = clean_env() | {"PYTHON": sys.executable}

    result = subprocess.run(
        ["bash", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert shell.text in quick
    assert result.returncode == 0, result.stderr
    assert len((tmp_path / "calls.txt").read_text().splitlines()) == len(calls) >= 5
    assert "rate_limited" in result.stdout
    assert "RateLimitedError" in result.stdout
    assert "report.html" in result.stdout
    assert re.search(r"^OK  runs/demo/\S+/run.tar.gz$", result.stdout, re.MULTILINE)
    assert list(statuses(tmp_path).values()) == ["success"]


def test_readme_quick_start_program_leaves_a_run(tmp_path: Path) -> None:
    """The README's orchestrator program leaves one run: steps, archive, summary."""
    (program,) = [
        b
        for b in blocks_of(REPO / "README.md")
        if b.lang == "python" and b.heading == "Quick start"
    ]
    (tmp_path / "my_agent.py").write_text(program.text, encoding="utf-8")

    result = run_python(["my_agent.py"], tmp_path)

    assert result.returncode == 0, result.stderr
    (run_dir,) = (tmp_path / "runs" / "my-agent").iterdir()
    assert result.stdout == f"{run_dir}\n"
    assert statuses(tmp_path) == {f"runs/my-agent/{run_dir.name}": "success"}
    steps = sorted(p.name for p in (run_dir / "logs").glob("step_*"))
    assert steps == ["step_001", "step_002", "step_003"]
    assert (run_dir / "logs" / "step_002" / "adapter.log").is_file()
    assert {p.name for p in run_dir.iterdir()} >= {
        "logs",
        "logs_summary.txt",
        "run.tar.gz",
        "run.tar.gz.sha256",
    }
    assert "warnings: 1" in (run_dir / "logs_summary.txt").read_text()


def console_params() -> list[Any]:
    """The ```console blocks: ``$ runlog ...`` lines, each followed by its output."""
    return [pytest.param(b, id=b.name) for b in all_blocks("console")]


@pytest.mark.parametrize("block", console_params())
def test_console_example_prints_what_the_page_shows(
    block: Block, tmp_path: Path
) -> None:
    """Each ``$ runlog`` command shown prints exactly the lines shown under it."""
    # the sample run, as sample_runs/ and as runs/: examples may write to it
    shutil.copytree(SAMPLES, tmp_path / "sample_runs")
    shutil.copytree(SAMPLES, tmp_path / "runs")
    examples: list[tuple[str, list[str]]] = []
    for line in block.text.splitlines():
        if line.startswith("$ "):
            examples.append((line[2:], []))
        else:
            examples[-1][1].append(line.rstrip())

    for command, expected in examples:
        argv = shlex.split(command)
        assert argv[0] == "runlog", command
        result = run_python(["-m", "runlog", *argv[1:]], tmp_path)
        actual = [line.rstrip() for line in result.stdout.splitlines()]
        assert result.returncode == 0, f"{block.name} {command}:\n{result.stderr}"
        assert lines_match(expected, actual), (
            f"{block.name}: `{command}` prints:\n" + "\n".join(actual)
        )


# --- what the pages quote ----------------------------------------------------


def test_readme_summary_excerpt_is_the_sample_runs_summary() -> None:
    """The README's summary excerpt is the sample run's summary, cut at [...]."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    excerpt = section(readme, "## A real summary")
    (block,) = [
        b for b in blocks_of(REPO / "README.md") if b.heading == "A real summary"
    ]
    summary = sample_run() / "logs_summary.txt"
    expected = [ln.replace("[...]", "...") for ln in block.text.splitlines()]

    assert f"({summary.relative_to(REPO)})" in excerpt
    assert lines_match([*expected, "..."], summary.read_text().splitlines())


def test_records_quoted_from_the_sample_run_are_in_it() -> None:
    """Record lines the docs quote from the sample run are lines of its files."""
    run = sample_run()
    quoted = 0
    for block in all_blocks("json"):
        for line in block.text.splitlines():
            record = orjson.loads(line)
            if record.get("run_id") != run.name:
                continue
            step = record["step"]
            folder = run / "logs" / (f"step_{step:03d}" if step is not None else "")
            log = folder / f"{record['component']}.log"
            assert line in log.read_text().splitlines(), (block.name, line)
            quoted += 1
    combined = (run / "logs" / "combined.log").read_text().splitlines()
    for block in blocks_of(REPO / "docs" / "LOGGING_SYSTEM.md"):
        for line in block.text.splitlines():
            if HUMAN_LINE.match(line):
                assert line in combined, (block.name, line)
                quoted += 1
    assert quoted >= 2


@pytest.mark.parametrize("page", ["README.md", "docs/LOGGING_SYSTEM.md"])
def test_run_ids_on_the_page_are_the_sample_runs(page: str) -> None:
    """Every run id quoted on the page is the sample run's, so it can be looked up."""
    ids = set(RUN_ID.findall((REPO / page).read_text(encoding="utf-8")))

    assert ids == {sample_run().name}


def user_pages() -> list[Any]:
    """README.md, CHANGELOG.md, sample_runs/README.md and docs/*.md."""
    pages = [*DOCS, REPO / "CHANGELOG.md", SAMPLES / "README.md"]
    return [
        pytest.param(
            page,
            id=str(page.relative_to(REPO)),
            marks=[pytest.mark.xfail(reason="still quotes the specification")]
            if page.name in CITES_SPEC
            else [],
        )
        for page in pages
    ]


@pytest.mark.parametrize("page", user_pages())
def test_user_docs_do_not_cite_the_specification(page: Path) -> None:
    """Pages users read never send them to a specification they do not have."""
    text = page.read_text(encoding="utf-8")

    assert not re.findall(r".{0,30}(?:\bSPEC\b|§).{0,30}", text)


@pytest.mark.parametrize("page", [pytest.param(p, id=p.name) for p in DOCS])
def test_relative_links_resolve(page: Path) -> None:
    """Every relative link on the page names a file that exists, and a heading in it."""
    broken = []
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(target)
        elif anchor and linked.suffix == ".md":
            headings = [
                slug(b.lstrip("#"))
                for b in linked.read_text(encoding="utf-8").splitlines()
                if re.match(r"#{1,6} ", b)
            ]
            if anchor not in headings and not any(
                anchor == f"{h}-{n}" for h in headings for n in range(1, 4)
            ):
                broken.append(target)

    assert not broken


# --- the API reference -------------------------------------------------------


@cache
def api_text() -> str:
    """docs/API.md."""
    return API.read_text(encoding="utf-8")


def public_module(name: str) -> Any:
    """The public module *name*; skips a module another change has not landed yet."""
    if name == "runlog.testing":
        return pytest.importorskip(name)
    return importlib.import_module(name)


def api_entry(qualified: str) -> str:
    """The text of ``### `QUALIFIED``` in docs/API.md, up to the next heading."""
    match = re.search(
        rf"^### `{re.escape(qualified)}`.*?(?=^##)", api_text() + "\n##", re.M | re.S
    )
    assert match, f"docs/API.md has no entry `{qualified}`"
    return match.group(0)


def entry_name(module: str, name: str) -> str:
    """Where *module*.*name* is described: its entry, or runlog's for a re-export."""
    import runlog

    value = getattr(importlib.import_module(module), name)
    if module != "runlog" and name in runlog.__all__ and getattr(runlog, name) is value:
        return f"runlog.{name}"
    return f"{module}.{name}"


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_api_reference_names_every_public_name(module: str) -> None:
    """docs/API.md names every name in the module's __all__ (so it cannot rot)."""
    mod = public_module(module)
    module_part = section(api_text(), f"## Module `{module}`")

    missing = [
        name
        for name in mod.__all__
        if f"`{entry_name(module, name)}`" not in api_text()
        or (
            entry_name(module, name) != f"{module}.{name}"
            and f"`{name}`" not in module_part
        )
    ]

    assert not missing, f"docs/API.md lacks {module}: {missing}"


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_api_reference_names_every_argument(module: str) -> None:
    """Each function's entry in docs/API.md names all of its arguments."""
    mod = public_module(module)
    missing = []
    for name in mod.__all__:
        value = getattr(mod, name)
        qualified = entry_name(module, name)
        if not callable(value) or (
            inspect.isclass(value)
            and (
                issubclass(value, BaseException) or name == "Run"  # made by start_run()
            )
        ):
            continue
        try:
            parameters = inspect.signature(value).parameters
        except (TypeError, ValueError):  # a typing alias such as Progress
            continue
        entry = api_entry(qualified)
        missing += [f"{qualified}({p})" for p in parameters if p not in entry]

    assert not missing


def test_api_reference_documents_configure_stdlib_propagate() -> None:
    """docs/API.md documents configure(stdlib_propagate=...) and its default."""
    entry = api_entry("runlog.configure")

    assert "stdlib_propagate: bool = False" in entry
    assert "| `stdlib_propagate` |" in entry


def test_doc_examples_import_public_modules_only() -> None:
    """Examples in the user docs import runlog's public modules, never private ones."""
    private = []
    for block in all_blocks("python"):
        private += [
            (block.name, m)
            for m in re.findall(r"\b(?:from|import) (runlog[\w.]*)", block.text)
            if any(part.startswith("_") for part in m.split("."))
        ]

    assert not private


# --- lnav ----------------------------------------------------------------------


def lnav_format() -> tuple[str, dict[str, Any]]:
    """The name and definition of the one format in docs/lnav/runlog.json."""
    document = json.loads(LNAV.read_text(encoding="utf-8"))
    (name,) = (k for k in document if not k.startswith("$"))
    fmt: dict[str, Any] = document[name]
    return name, fmt


def test_lnav_format_names_every_record_key() -> None:
    """docs/lnav/runlog.json is JSON and maps ts, level, event and every other key."""
    name, fmt = lnav_format()
    page = (REPO / "docs" / "LOGGING_SYSTEM.md").read_text(encoding="utf-8")

    assert fmt["json"] is True
    assert (fmt["timestamp-field"], fmt["level-field"], fmt["body-field"]) == (
        "ts",
        "level",
        "event",
    )
    named = {"ts", "level", *fmt["value"]}
    assert set(RESERVED_KEYS) <= named, set(RESERVED_KEYS) - named
    shown = {f["field"] for f in fmt["line-format"] if isinstance(f, dict)}
    assert shown - {"__timestamp__", "__level__"} <= set(fmt["value"])
    assert "lnav -i docs/lnav/runlog.json" in page
    assert f"FROM {name}" in page  # the SQL table lnav names after the format


def test_lnav_levels_match_exactly_the_levels_runlog_writes() -> None:
    """Each level runlog writes matches one lnav level pattern: its own."""
    patterns = lnav_format()[1]["level"]

    for level in LEVEL_NUMBERS:
        matches = [lnav for lnav, rx in patterns.items() if re.search(rx, level)]
        assert matches == [level], (level, matches)


def test_lnav_format_reads_a_real_step_log() -> None:
    """Every line of a sample step log has the fields the lnav format relies on."""
    fmt = lnav_format()[1]
    log = sample_run() / "logs" / "step_003" / "orchestrator.log"

    for line in log.read_text().splitlines():
        record = orjson.loads(line)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", record["ts"])
        assert any(re.search(rx, record["level"]) for rx in fmt["level"].values())
        assert isinstance(record[fmt["body-field"]], str)
        assert record["step"] == 3 and fmt["value"]["step"]["kind"] == "integer"
