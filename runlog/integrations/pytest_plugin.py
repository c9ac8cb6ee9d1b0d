"""
The pytest plugin of runlog: the ``runlog_run`` fixture and the ``runlog`` marker.

Loaded through the ``pytest11`` entry point once runlog is installed (or
with ``-p runlog.integrations.pytest_plugin``). Cheap to load: the run code is
imported by the first test that uses the fixture.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pytest

from .._config import apply_settings, current_settings
from ..context import LogContext
from ..errors import ContextError

if TYPE_CHECKING:
    from ..run import Run

__all__ = ["runlog_run"]

FRAMEWORK: Final = "pytest"
"""The framework of a ``runlog_run`` run unless the marker names another."""

MARKER: Final = (
    "runlog(**start_run_kwargs): options of the runlog_run fixture's run, passed "
    "to runlog.start_run (framework, run_id, metadata, archive, archive_format...)"
)
_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_.-]+")
_ERROR: Final = pytest.StashKey[BaseException]()


def pytest_configure(config: pytest.Config) -> None:
    """Declare the ``runlog`` marker (so ``--strict-markers`` accepts it)."""
    config.addinivalue_line("markers", MARKER)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> None:
    """Remember the exception that ended a test body, for the run's status."""
    if (
        call.when == "call"
        and call.excinfo is not None
        and "runlog_run" in getattr(item, "fixturenames", ())
    ):
        item.stash[_ERROR] = call.excinfo.value


def run_id_for(node_name: str) -> str:
    """A safe run id made from a test's name: ``test_x[a b]`` -> ``test_x-a_b``."""
    cleaned = _UNSAFE.sub("_", node_name.replace("[", "-").rstrip("]"))
    return cleaned.lstrip(".")[:128] or "test"


@pytest.fixture
def runlog_run(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Run]:
    """
    An open run under ``tmp_path / "runs"``, finished after the test, whatever happened.

    The run is ``start_run("pytest", <the test's name>, tmp_path / "runs",
    archive=False)``; ``@pytest.mark.runlog(...)`` overrides any argument
    (``archive=True``, ``metadata=...``, ``framework=...``). After the test
    the run is finished unless the test finished it: ``failed`` with the
    test's exception when the body raised (``interrupted`` for
    KeyboardInterrupt), else ``success``. Settings a test changed with
    ``configure()`` are put back. So a failing test never leaves a run open
    for the next one (see #14).

    Raises:
        ContextError: At teardown, if the test left another run's context
            set; this run is then finished all the same.
    """
    options: dict[str, Any] = {
        "framework": FRAMEWORK,
        "run_id": run_id_for(request.node.name),
        "runs_dir": tmp_path / "runs",
        "archive": False,
    }
    marker = request.node.get_closest_marker("runlog")
    if marker is not None:
        options.update(marker.kwargs)
    # runlog.run (archive, zstandard) loads with the first use, not in every
    # pytest session of a project that has runlog installed (see #11)
    from ..run import start_run

    settings = current_settings()
    run = start_run(**options)
    try:
        yield run
    finally:
        stash = request.node.stash
        error = stash.get(_ERROR, None)
        if _ERROR in stash:
            del stash[_ERROR]  # the item outlives the test: keep no frames
        try:
            _finish(run, error)
        finally:
            if current_settings() is not settings:
                apply_settings(settings)


def _finish(run: Run, error: BaseException | None) -> None:
    if run.is_finished:
        return
    context = LogContext.get_instance()
    left_open = context.run_id if context.logs_dir not in (None, run.logs_dir) else None
    if left_open is not None:
        # the test set another run's context and left it: free it, so this
        # run can finish and the next test can start one (see #14)
        context.clear_run_context()
    run.finish(_status(error), error=error)
    if left_open is not None:
        raise ContextError(
            f"the test left run {left_open!r} as the current run context; "
            "runlog_run cleared it and finished its own run"
        )


def _status(error: BaseException | None) -> str:
    if error is None or isinstance(error, pytest.skip.Exception):
        return "success"
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    return "failed"
