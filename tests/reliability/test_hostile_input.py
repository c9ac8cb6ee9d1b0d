"""Hostile names never leave the run directory; hostile values never stop a record."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runlog import (
    ContextError,
    LogContext,
    Run,
    configure,
    get_logger,
    start_run,
)
from tests.reliability._checks import (
    COMBINED_LINE,
    REPO,
    add_figures,
    all_paths,
    json_lines,
    split_whole_lines,
)

pytestmark = pytest.mark.reliability

SAFE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")
PIECES = [
    "..",
    ".",
    "/",
    "\\",
    "\x00",
    "\n",
    "\r",
    "~",
    " ",
    "é",
    "\U0001f4a5",
    "\u202e",
    "\ud800",
    "a",
    "Z",
    "0",
    "_",
    "-",
    "CON",
    "*",
    "$HOME",
    "%2e%2e",
    ":",
    "/etc/passwd",
    "\uff0e\uff0e",  # fullwidth dots
]
NAMES = st.one_of(
    st.text(max_size=300),
    st.lists(st.sampled_from(PIECES), max_size=40).map("".join),
    st.text(alphabet="abXY09_.-", min_size=0, max_size=200),
    st.from_regex(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}", fullmatch=True),
    st.sampled_from(["", ".", "..", "a" * 128, "a" * 129, "a/..", "run\x00id", "-"]),
)


def is_safe(name: str) -> bool:
    """The contract of SPEC §1: 1-128 of [A-Za-z0-9_.-], not starting with '.'."""
    return SAFE_NAME.fullmatch(name) is not None and not name.startswith(".")


@pytest.fixture(scope="module")
def sandbox_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory that holds one sandbox per generated example."""
    return tmp_path_factory.mktemp("hostile")


def fresh_sandbox(root: Path) -> tuple[Path, Path]:
    """root/<new>/, and the runs dir four levels below it (room for ``..``)."""
    top = Path(tempfile.mkdtemp(dir=root))
    runs = top / "d1" / "d2" / "d3" / "runs"
    runs.mkdir(parents=True)
    return top, runs


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(framework=NAMES, run_id=NAMES, component=NAMES)
def test_hostile_names_are_refused_or_stay_in_the_run_dir(
    framework: str, run_id: str, component: str, sandbox_root: Path
) -> None:
    """
    start_run and get_logger take a name iff it is safe; nothing lands outside.

    The whole sandbox is listed afterwards: every path is the runs dir's
    own, or under ``runs/<framework>/<run_id>/`` of an accepted run.
    """
    configure(console_format="off")
    top, runs = fresh_sandbox(sandbox_root)
    before = all_paths(top)
    run, refused = attempt(lambda: start_run(framework, run_id, runs, archive=False))
    if refused is not None:
        assert not (is_safe(framework) and is_safe(run_id)), refused
        assert repr(framework) in str(refused) or repr(run_id) in str(refused)
    assert (run is None) != (refused is None)
    try:
        if run is not None:
            assert is_safe(framework) and is_safe(run_id)
            log_to_the_run(run, component)
    finally:
        LogContext.get_instance().clear_run_context()
        check_contained(top, before, runs, framework, run_id, accepted=run is not None)
    add_figures("input.names", examples=1, outside=0)


def log_to_the_run(run: Run, component: str) -> None:
    """Log through *component* (or refuse it), in a step named after it; finish."""
    log, refused = attempt(lambda: get_logger("hostile", component=component))
    assert (log is not None) == is_safe(component), refused
    if refused is not None:
        assert repr(component) in str(refused)
        log = get_logger("hostile")
    assert log is not None
    with run.step(1, name=component):  # a step name is only a value
        log.info("x", name=component)
        logging.getLogger("third.party").warning("y", extra={"component": component})
    run.finish()


T = TypeVar("T")


def attempt(call: Callable[[], T]) -> tuple[T | None, ContextError | None]:
    """The result of *call*, or the ContextError it raised."""
    try:
        return call(), None
    except ContextError as exc:
        return None, exc


def check_contained(
    top: Path,
    before: set[Path],
    runs: Path,
    framework: str,
    run_id: str,
    *,
    accepted: bool,
) -> None:
    """Every path created under *top* is the accepted run's (none if refused)."""
    created = all_paths(top) - before
    if not accepted:
        assert created == set()
        return
    run_dir = runs / framework / run_id
    assert run_dir.is_dir()
    allowed = {runs / framework, *run_dir.parents}
    for path in created:
        assert path in allowed or path.is_relative_to(run_dir), path


@given(component=NAMES)
@settings(max_examples=100, deadline=None)
def test_hostile_component_of_a_bound_or_stdlib_logger_is_refused(
    component: str, sandbox_root: Path
) -> None:
    """A component bound later, passed in a call or by stdlib ``extra``: checked."""
    configure(console_format="off")
    top, runs = fresh_sandbox(sandbox_root)
    logs = runs / "fw" / "r1" / "logs"
    context = LogContext.get_instance()
    context.set_run_context("r1", "fw", logs)
    try:
        log = get_logger("hostile")
        for call in (
            lambda: log.bind(component=component).info("bound"),
            lambda: log.info("kw", component=component),
            lambda: context.log_path(component),
        ):
            try:
                call()
            except ContextError:
                assert not is_safe(component)
            else:
                assert is_safe(component)
        # a third-party library's record is never refused: it is kept under
        # component "external" with the bad name as a value
        logging.getLogger("lib").warning("extra", extra={"component": component})
    finally:
        context.clear_run_context()
    for path in all_paths(top):
        assert path in {*logs.parents} or path.is_relative_to(logs), path
    if not is_safe(component):
        [record] = [r for r in json_lines(logs / "run.log")[0] if r["event"] == "extra"]
        assert record["component"] == "external"


def test_a_child_given_a_hostile_run_id_writes_nothing(tmp_path: Path) -> None:
    """RUNLOG_RUN_ID='../../evil': import works; the first record raises, no file."""
    env = {
        **os.environ,
        "RUNLOG_LOGS_DIR": str(tmp_path / "runs" / "fw" / "r1" / "logs"),
        "RUNLOG_RUN_ID": "../../evil",
        "RUNLOG_FRAMEWORK": "fw",
        "RUNLOG_OWNER_PID": "1",
    }
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import runlog; log = runlog.get_logger('child'); print('imported'); "
            "log.info('hello')",
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.stdout == "imported\n"
    assert result.returncode == 1
    assert "ContextError: run_id '../../evil'" in result.stderr
    assert list(tmp_path.iterdir()) == []


# --- values -------------------------------------------------------------------


class RaisingRepr:
    """An object whose __repr__ and __str__ both raise."""

    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    def __str__(self) -> str:
        raise RuntimeError("no str")


class RaisingEverything(RaisingRepr):
    """Also every attribute lookup and comparison raises."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"no {name}")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("no eq")

    __hash__ = object.__hash__


class BadModel:
    """Looks like pydantic, but model_dump raises."""

    def model_dump(self, **kwargs: Any) -> dict[str, Any]:
        raise ValueError("broken model")


@dataclasses.dataclass
class Point:
    """A plain dataclass value."""

    x: int
    y: Point | None = None


class BadStrError(Exception):
    """An exception whose str() raises."""

    def __str__(self) -> str:
        raise RuntimeError("no str")


def deep(levels: int, kind: type) -> Any:
    """A value nested *levels* deep (dicts or lists)."""
    value: Any = "bottom"
    for _ in range(levels):
        value = {"d": value} if kind is dict else [value]
    return value


def cycles() -> dict[str, Any]:
    """A dict and a list that contain themselves, and a mixed cycle."""
    loop: dict[str, Any] = {"name": "loop"}
    loop["self"] = loop
    ring: list[Any] = [1]
    ring.append(ring)
    mixed: dict[str, Any] = {"items": []}
    mixed["items"].append({"parent": mixed})
    point = Point(1)
    point.y = point
    return {"loop": loop, "ring": ring, "mixed": mixed, "point": point}


HOSTILE_VALUES: dict[str, Any] = {
    "deep dict 10000": deep(10_000, dict),
    "deep list 10000": deep(10_000, list),
    "cycles": cycles(),
    "10 MB string": "x" * (10 << 20),
    "10 MB with newlines": "line\n" * (2 << 20),
    "invalid utf-8": b"\xff\xfe\xc3\x28 \xa0\xa1",
    "lone surrogates": "a\ud800b\udfffc",
    "surrogate keys": {"\ud800": 1, "k\udc00": {"\udfff": 2}},
    "non-str keys": {1: "a", (2, 3): "b", None: "c", 4.5: "d", b"\xff": "e"},
    "raising repr": RaisingRepr(),
    "raising everything": RaisingEverything(),
    "raising repr key": {RaisingRepr(): 1},
    "set of raising": {RaisingEverything(), RaisingEverything()},
    "bad model": BadModel(),
    "huge int": 10**5000,
    "floats": [float("nan"), float("inf"), -float("inf"), -0.0],
    "decimal": Decimal("1e-1000"),
    "path": Path("/x") / "y",
    "exception": BadStrError("hidden"),
    "type": type,
    "generator": (i for i in range(3)),
    "bytearray": bytearray(b"\x00\x01\xff"),
    "memoryview": memoryview(b"\xff" * 10),
}


@pytest.fixture
def worker_log(run_logs: Path) -> Path:
    """Step 1 of a run; returns step_001/worker.log."""
    configure(console_format="off")
    LogContext.get_instance().set_step_context(1)
    return run_logs / "step_001" / "worker.log"


@pytest.mark.parametrize("case", sorted(HOSTILE_VALUES))
def test_a_hostile_value_is_still_written(case: str, worker_log: Path) -> None:
    """The record lands, whole, in its step log and as one line in combined.log."""
    log = get_logger("hostile", component="worker")
    log.info("value", case=case, v=HOSTILE_VALUES[case])
    log.info("after", case=case)
    records, rest = json_lines(worker_log)
    assert rest == b""
    assert [r["event"] for r in records] == ["value", "after"]
    assert records[0]["case"] == case and "v" in records[0]
    lines, rest = split_whole_lines(worker_log.parent.parent / "combined.log")
    assert rest == b"" and len(lines) == 2
    assert all(COMBINED_LINE.match(line) for line in lines)
    add_figures("input.values", records=2, lost=0)


@pytest.mark.parametrize(
    "event",
    [None, 5, RaisingRepr(), b"\xff\xfe", "a\ud800", "two\nlines\r", "x" * (1 << 20)],
)
def test_a_hostile_event_is_still_written(event: Any, worker_log: Path) -> None:
    """Whatever the event is, the record is one line with a string event."""
    get_logger("hostile", component="worker").info(event)
    [record], rest = json_lines(worker_log)
    assert rest == b"" and isinstance(record["event"], str)
    [line] = (worker_log.parent.parent / "combined.log").read_bytes().splitlines()
    assert COMBINED_LINE.match(line)


def test_keys_with_line_breaks_stay_on_one_combined_line(worker_log: Path) -> None:
    """A caller's key holding a newline or CR never splits a combined.log line."""
    get_logger("hostile", component="worker").info(
        "keys", **{"a\nb": 1, "c\rd": "v", "e f=g": "w"}
    )
    [record], _ = json_lines(worker_log)
    assert record["a\nb"] == 1 and record["c\rd"] == "v"
    [line] = (worker_log.parent.parent / "combined.log").read_bytes().splitlines()
    assert COMBINED_LINE.match(line) and b"a\\nb=1" in line and b"\r" not in line


def test_an_exception_whose_str_raises_is_still_logged(worker_log: Path) -> None:
    """log.exception with an exception whose __str__ raises writes its traceback."""
    log = get_logger("hostile", component="worker")
    try:
        raise BadStrError
    except BadStrError:
        log.exception("failed")
    [record], _ = json_lines(worker_log)
    assert "BadStrError" in record["exception"]


JSONISH = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text()
    | st.binary(max_size=50),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.text(max_size=10), children, max_size=5)
        | st.tuples(children, children)
        | st.frozensets(st.integers(), max_size=5)
    ),
    max_leaves=30,
)


@given(value=JSONISH, key=st.text(min_size=1, max_size=20))
@settings(max_examples=200, deadline=None)
def test_any_generated_value_is_written(
    value: Any, key: str, sandbox_root: Path
) -> None:
    """Generated nested values (text with surrogates, bytes, NaN, big ints) land."""
    configure(console_format="off")
    _, runs = fresh_sandbox(sandbox_root)
    logs = runs / "fw" / "r1" / "logs"
    context = LogContext.get_instance()
    context.set_run_context("r1", "fw", logs)
    try:
        get_logger("gen", component="worker").info("gen", **{key: value})
    finally:
        context.clear_run_context()
    [record], rest = json_lines(logs / "run.log")
    assert rest == b"" and record["event"] == "gen"
    [line] = (logs / "combined.log").read_bytes().splitlines()
    assert COMBINED_LINE.match(line)
    orjson.loads(orjson.dumps(record))  # what was written is plain JSON


@pytest.mark.parametrize("console", ["pretty", "json"])
def test_a_huge_int_reaches_the_console_too(
    console: str, worker_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An int too long for str() (over 4300 digits) is written and echoed."""
    configure(console_format=console)
    get_logger("hostile", component="worker").info("big", v=-(10**5000))
    [record], _ = json_lines(worker_log)
    assert record["v"] == hex(-(10**5000))  # hex keeps the whole value
    assert "big" in capsys.readouterr().err


def test_an_exception_whose_str_raises_leaves_the_step_and_run_unchanged(
    tmp_path: Path,
) -> None:
    """It is re-raised as itself (not as its __str__'s error) and recorded."""
    configure(console_format="off")
    run = start_run("fw", "r1", tmp_path / "runs", archive=False)
    with pytest.raises(BadStrError), run, run.step(1):
        raise BadStrError
    [step_end] = [
        r
        for r in json_lines(run.logs_dir / "step_001" / "orchestrator.log")[0]
        if r["event"] == "step_end"
    ]
    assert step_end["status"] == "failed" and step_end["error_type"] == "BadStrError"
    assert step_end["error"] == "<BadStrError: str() failed>"
    info = orjson.loads((run.logs_dir / "run.json").read_bytes())
    assert info["status"] == "failed" and info["error"] == step_end["error"]
