"""LogContext: the singleton, name and step checks, properties and log_path."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from runlog import ContextError, LogContext, get_logger
from tests.conftest import files_under


def test_get_instance_is_always_the_same_object() -> None:
    """get_instance() and LogContext() return one process-wide object."""
    assert LogContext.get_instance() is LogContext.get_instance()
    assert LogContext() is LogContext.get_instance()


def test_set_run_context_creates_logs_dir_and_sets_properties(tmp_path: Path) -> None:
    """set_run_context creates the logs dir and exposes run_id/framework/logs_dir."""
    context = LogContext.get_instance()
    logs = tmp_path / "runs" / "fw" / "r1" / "logs"
    context.set_run_context("r1", "fw", logs)
    assert logs.is_dir()
    assert (context.run_id, context.framework) == ("r1", "fw")
    assert context.logs_dir == logs
    assert context.step is None
    assert files_under(tmp_path) == set()  # the setter writes no record


def test_set_step_context_creates_step_dir(run_logs: Path) -> None:
    """set_step_context(7) creates step_007/ and makes 7 the current step."""
    context = LogContext.get_instance()
    context.set_step_context(7)
    assert (run_logs / "step_007").is_dir()
    assert context.step == 7
    context.set_step_context(1234)
    assert (run_logs / "step_1234").is_dir()
    context.clear_step_context()
    assert context.step is None


def test_clear_run_context_resets_everything(run_logs: Path) -> None:
    """After clear_run_context every property is None again."""
    context = LogContext.get_instance()
    context.set_step_context(2)
    context.clear_run_context()
    assert (context.run_id, context.framework, context.logs_dir, context.step) == (
        None,
        None,
        None,
        None,
    )


@pytest.mark.parametrize(
    "bad",
    [
        "../x",
        "a/b",
        "",
        ".hidden",
        "x" * 200,
        "nul\x00byte",
        "/abs/path",
        "..",
        "a b",
        3,
    ],
)
def test_bad_run_id_raises_and_writes_nothing(tmp_path: Path, bad: object) -> None:
    """A run id that is not one safe path segment raises ContextError quoting it."""
    with pytest.raises(ContextError, match="run_id") as info:
        LogContext.get_instance().set_run_context(bad, "fw", tmp_path / "logs")  # type: ignore[arg-type]  # bad on purpose
    assert repr(bad)[:40] in str(info.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad", ["../x", "a/b", "", ".x", "y" * 129, "\x00"])
def test_bad_framework_raises(tmp_path: Path, bad: str) -> None:
    """A bad framework name raises ContextError naming it; nothing is created."""
    with pytest.raises(ContextError, match="framework"):
        LogContext.get_instance().set_run_context("r1", bad, tmp_path / "logs")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad", ["../x", "a/b", "", ".x", "z" * 200, "/etc/passwd"])
def test_bad_component_raises_and_writes_nothing(run_logs: Path, bad: str) -> None:
    """get_logger with a bad component raises ContextError; no file appears."""
    with pytest.raises(ContextError, match="component"):
        get_logger("m", component=bad)
    assert files_under(run_logs) == set()


def test_component_bound_later_is_checked_when_logged(run_logs: Path) -> None:
    """A bad component bound with bind() is refused when the record is routed."""
    log = get_logger("m", component="ok").bind(component="../escape")
    with pytest.raises(ContextError, match="escape"):
        log.info("x")
    assert files_under(run_logs.parent.parent) == set()


@pytest.mark.parametrize("bad", [-1, "3", True, 2.5, None])
def test_bad_step_raises(run_logs: Path, bad: object) -> None:
    """Steps must be ints >= 0: -1, "3", True, 2.5 and None raise ContextError."""
    context = LogContext.get_instance()
    with pytest.raises(ContextError, match="step"):
        context.set_step_context(bad)  # type: ignore[arg-type]  # bad on purpose
    with (
        pytest.raises(ContextError, match="step"),
        context.step_scope(bad),  # type: ignore[arg-type]  # bad on purpose
    ):
        pass
    assert context.step is None
    assert files_under(run_logs) == set()


def test_set_step_without_run_raises() -> None:
    """Setting a step with no run context is a ContextError, not a silent no-op."""
    with pytest.raises(ContextError, match="no run context"):
        LogContext.get_instance().set_step_context(1)


def test_log_path_follows_routing(run_logs: Path) -> None:
    """log_path names the file the next record of a component goes to."""
    context = LogContext.get_instance()
    assert context.log_path("adapter") == run_logs / "run.log"
    assert context.log_path("reconciliation") == run_logs / "reconciliation.log"
    context.set_step_context(3)
    assert context.log_path("adapter") == run_logs / "step_003" / "adapter.log"
    assert context.log_path("reconciliation") == run_logs / "reconciliation.log"
    with pytest.raises(ContextError):
        context.log_path("../x")


def test_log_path_without_run_raises() -> None:
    """log_path with no run context raises ContextError."""
    with pytest.raises(ContextError):
        LogContext.get_instance().log_path("adapter")


def test_snapshot_never_mixes_run_and_step(tmp_path: Path) -> None:
    """Readers see whole snapshots: a step of run B never appears with run A."""
    context = LogContext.get_instance()
    stop = threading.Event()
    seen_bad: list[tuple[str | None, int | None]] = []

    def read() -> None:
        while not stop.is_set():
            state = context.state
            if state.run_id == "a" and state.step is not None and state.step >= 100:
                seen_bad.append((state.run_id, state.step))

    reader = threading.Thread(target=read)
    reader.start()
    for i in range(200):
        context.set_run_context("a", "fw", tmp_path / "a")
        context.set_step_context(i % 100)
        context.set_run_context("b", "fw", tmp_path / "b")
        context.set_step_context(100 + i % 100)
    stop.set()
    reader.join()
    assert seen_bad == []
