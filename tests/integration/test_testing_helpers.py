"""#14: the stdlib bridge, capture_records() and the runlog_run fixture."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import orjson
import pytest

from runlog import ConfigurationError, configure, get_logger
from runlog._config import Settings, apply_settings, current_settings
from runlog.integrations.stdlib import StdlibSink
from runlog.run import Run
from runlog.testing import RecordCapture, capture_records
from tests.conftest import files_under, read_records

pytest_plugins = ["pytester"]

PLUGIN = "runlog.integrations.pytest_plugin"
SECRET = "sk-live-0123456789"


def run_script(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run *code* in a fresh interpreter; global logging state stays there."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def run_session(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, source: str
) -> pytest.RunResult:
    """Run *source* as a test module in a fresh pytest process with the plugin."""
    # an installed pytest11 entry point must not load the plugin a second time
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makepyfile(test_inner=textwrap.dedent(source))
    return pytester.runpytest_subprocess(
        "-p", PLUGIN, "-p", "no:cacheprovider", "-W", "error", "-s", timeout=60
    )


def run_jsons(root: Path) -> dict[str, dict[str, Any]]:
    """Every run.json below *root*, by run id."""
    found: dict[str, dict[str, Any]] = {}
    for path in root.rglob("run.json"):
        info = json.loads(path.read_text())
        found[info["run_id"]] = info
    return found


# the stdlib bridge: configure(stdlib_propagate=True)


def test_stdlib_propagate_rejects_a_non_bool_and_changes_nothing() -> None:
    """configure(stdlib_propagate="yes") raises naming 'yes'; the settings stay."""
    before = current_settings()
    with pytest.raises(ConfigurationError, match="stdlib_propagate 'yes'"):
        configure(stdlib_propagate="yes")  # type: ignore[arg-type]
    assert current_settings() is before
    assert Settings().stdlib_propagate is False


def test_stdlib_propagate_adds_one_bridge_and_removes_it() -> None:
    """On: exactly one StdlibSink among the sinks, others kept; off: none left."""
    with capture_records():
        configure(console_format="off", stdlib_propagate=True)
        configure(console_format="off", stdlib_propagate=True)
        sinks = current_settings().extra_sinks
        assert [type(s) for s in sinks] == [RecordCapture, StdlibSink]
        configure(console_format="off")
        assert [type(s) for s in current_settings().extra_sinks] == [RecordCapture]
    assert current_settings().extra_sinks == ()
    apply_settings(Settings(stdlib_propagate=True))
    assert [type(s) for s in current_settings().extra_sinks] == [StdlibSink]


def test_caplog_sees_runlog_records_with_their_fields(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With stdlib_propagate=True caplog gets each record, its pairs redacted."""
    result = run_session(
        pytester,
        monkeypatch,
        """
        import logging
        import runlog

        def test_outside_a_run(caplog):
            runlog.configure(console_format="off", stdlib_propagate=True)
            caplog.set_level(logging.DEBUG)
            log = runlog.get_logger("app.adapter", component="adapter", model="m1")
            log.debug("api_call", prompt_tokens=12, api_key="SECRET", name="n")
            [r] = [r for r in caplog.records if r.name == "app.adapter"]
            print("OUT", r.levelname, r.getMessage(), r.component, r.model,
                  r.prompt_tokens, r.api_key, r.step, r.run_id, r.name_,
                  r.funcName, caplog.text.count("api_call"))

        def test_in_a_run(runlog_run, caplog):
            runlog.configure(console_format="off", stdlib_propagate=True)
            with runlog_run.step(2):
                runlog.get_logger("app", component="validator").warning(
                    "mismatch", expected=3
                )
            [r] = [r for r in caplog.records if r.getMessage() == "mismatch"]
            print("IN", r.levelno, r.component, r.step, r.run_id, r.framework,
                  r.expected)

        def test_exception_text(caplog):
            runlog.configure(console_format="off", stdlib_propagate=True)
            caplog.set_level(logging.INFO)
            runlog.get_logger("setup").debug("login", password="SECRET")
            try:
                raise KeyError("SECRET")
            except KeyError:
                runlog.get_logger("app").exception("lookup_failed")
            [r] = [r for r in caplog.records if r.name == "app"]
            print("EXC", r.exc_info, "KeyError" in r.exc_text, "SECRET" in r.exc_text)
            assert "lookup_failed\\nTraceback" in caplog.text

        def test_off_by_default(caplog):
            runlog.configure(console_format="off")
            caplog.set_level(logging.DEBUG)
            runlog.get_logger("app").error("quiet")
            print("OFF", [r.getMessage() for r in caplog.records])
        """.replace("SECRET", SECRET),
    )
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(
        [
            "*OUT DEBUG api_call adapter m1 12 *** None None n test_outside_a_run 1",
            "*IN 30 validator 2 test_in_a_run pytest 3",
            "*EXC None True False",
            "*OFF []",
        ]
    )
    assert SECRET not in result.stdout.str()


def test_app_handler_gets_each_record_once_and_files_get_no_copy(
    tmp_path: Path,
) -> None:
    """An app's root handler: runlog records once, stdlib records once, files once."""
    done = run_script(
        """
        import json, logging, sys
        import runlog

        seen = []
        class Keep(logging.Handler):
            def emit(self, record):
                seen.append([record.name, record.levelname, record.getMessage(),
                             getattr(record, "component", None),
                             getattr(record, "step", None),
                             getattr(record, "prompt_tokens", None),
                             getattr(record, "api_key", None),
                             record.filename, record.funcName,
                             bool(record.exc_text) and "ZeroDivisionError" in
                             record.exc_text])

        logging.getLogger().addHandler(Keep())
        logging.getLogger().setLevel(logging.INFO)
        logging.getLogger("app.quiet").setLevel(logging.WARNING)
        runlog.configure(console_format="off", stdlib_propagate=True)
        run = runlog.start_run("fw", "r1", sys.argv[1], archive=False)
        log = runlog.get_logger("app.adapter", component="adapter")

        def call_model():
            with run.step(3):
                log.info("api_call", prompt_tokens=12, api_key=sys.argv[2])
                logging.getLogger("httpx").info("HTTP 200")
                runlog.get_logger("app.quiet", component="adapter").info("hidden")
                try:
                    1 / 0
                except ZeroDivisionError:
                    log.exception("failed")

        call_model()
        run.finish()
        print(json.dumps(seen))
        """,
        str(tmp_path / "runs"),
        SECRET,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    app = [r for r in seen if r[0] != "runlog"]
    assert [r[:7] for r in app] == [
        ["app.adapter", "INFO", "api_call", "adapter", 3, 12, "***"],
        ["httpx", "INFO", "HTTP 200", None, None, None, None],
        ["app.adapter", "ERROR", "failed", "adapter", 3, None, None],
    ]
    # the caller as stdlib finds it; the traceback only on the exception record
    assert [r[7:] for r in app] == [
        ["<string>", "call_model", False],
        ["<string>", "call_model", False],
        ["<string>", "call_model", True],
    ]
    assert [r[2] for r in seen if r[0] == "runlog"] == [
        "run_start",
        "step_start",
        "step_end",
        "run_end",
    ]
    step = tmp_path / "runs" / "fw" / "r1" / "logs" / "step_003"
    assert [r["event"] for r in read_records(step / "adapter.log")] == [
        "api_call",
        "hidden",
        "failed",
    ]
    assert [r["event"] for r in read_records(step / "external.log")] == ["HTTP 200"]
    assert SECRET not in done.stdout


def test_a_callhandlers_hook_sees_records_when_no_handler_is_configured() -> None:
    """Sentry's way in (a hook on Logger.callHandlers) gets fields; no 2nd print."""
    done = run_script(
        """
        import json, logging, sys
        hooked = []
        original = logging.Logger.callHandlers

        # how sentry_sdk's LoggingIntegration listens (setup_once)
        def patched(self, record):
            try:
                return original(self, record)
            finally:
                hooked.append({k: v for k, v in vars(record).items() if k in (
                    "name", "msg", "levelno", "component", "run_id", "step",
                    "user", "token", "exc_text")})

        logging.Logger.callHandlers = patched
        import runlog
        runlog.configure(stdlib_propagate=True)
        runlog.get_logger("app", component="adapter").error(
            "payment_failed", user="ann", token=sys.argv[1]
        )
        print(json.dumps(hooked))
        """,
        SECRET,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [
        {
            "name": "app",
            "msg": "payment_failed",
            "levelno": 40,
            "component": "adapter",
            "run_id": None,
            "step": None,
            "user": "ann",
            "token": "***",
            "exc_text": None,
        }
    ]
    # runlog's console line only: stdlib's last resort did not print it again
    assert done.stderr.count("payment_failed") == 1
    assert "user=ann" in done.stderr


def test_a_handler_that_logs_through_runlog_does_not_loop(tmp_path: Path) -> None:
    """A handler logging via runlog: its record is written once, not handed back."""
    done = run_script(
        """
        import logging, sys
        import runlog

        class Echo(logging.Handler):
            def emit(self, record):
                runlog.get_logger("echo", component="echo").info(
                    "echoed", of=record.getMessage()
                )

        logging.getLogger().addHandler(Echo())
        runlog.configure(console_format="off", stdlib_propagate=True)
        runlog.LogContext.get_instance().set_run_context("r1", "fw", sys.argv[1])
        runlog.get_logger("app", component="adapter").warning("ping")
        runlog.LogContext.get_instance().clear_run_context()
        """,
        str(tmp_path / "logs"),
    )
    assert done.returncode == 0, done.stderr
    assert files_under(tmp_path / "logs") == {"run.log", "combined.log"}
    records = read_records(tmp_path / "logs" / "run.log")
    assert [(r["component"], r["event"], r.get("of")) for r in records] == [
        ("adapter", "ping", None),
        ("echo", "echoed", "ping"),
    ]


# capture_records()


def test_capture_records_yields_the_records_exactly_as_written(run: Run) -> None:
    """Captured dicts equal the parsed lines of the step files, redaction included."""
    log = get_logger("app.adapter", component="adapter")
    with capture_records() as records, run.step(3):
        log.info("api_call", prompt_tokens=12, api_key=SECRET, tags={"b", "a"})
        logging.getLogger("httpx").info("HTTP %d", 200)
        try:
            raise ValueError(SECRET)
        except ValueError:
            log.exception("failed", path=Path("/data/x"))
    step = run.logs_dir / "step_003"
    by_component: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_component.setdefault(record["component"], []).append(record)
    assert set(by_component) == {"adapter", "external", "orchestrator"}
    for component, captured in by_component.items():
        assert captured == read_records(step / f"{component}.log"), component
    first, failed = by_component["adapter"]
    assert list(first) == [
        "ts",
        "level",
        "event",
        "logger",
        "component",
        "run_id",
        "framework",
        "step",
        "prompt_tokens",
        "api_key",
        "tags",
    ]
    assert (first["run_id"], first["step"], first["api_key"]) == ("r1", 3, "***")
    assert first["tags"] == ["a", "b"]
    assert failed["path"] == "/data/x"
    assert "ValueError" in failed["exception"]
    assert SECRET not in orjson.dumps(records).decode()


def test_capture_records_without_a_run_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No run: records captured with run_id and step None; no file appears."""
    monkeypatch.chdir(tmp_path)
    configure(console_format="off")
    with capture_records() as records:
        get_logger("app", component="adapter").warning("alone", n=1)
    assert [
        (r["level"], r["event"], r["component"], r["run_id"], r["step"], r["n"])
        for r in records
    ] == [("warning", "alone", "adapter", None, None, 1)]
    assert files_under(tmp_path) == set()


def test_capture_records_stops_at_the_end_of_the_block_even_on_error() -> None:
    """An exception leaves the block: the sink is gone, later records not captured."""
    configure(console_format="off")
    log = get_logger("app")

    def log_then_fail() -> None:
        log.info("in")
        raise RuntimeError("inside")

    with pytest.raises(RuntimeError, match="inside"), capture_records() as records:
        log_then_fail()
    log.info("after")
    assert [r["event"] for r in records] == ["in"]
    assert current_settings().extra_sinks == ()


def test_capture_records_nest_and_survive_configure() -> None:
    """Nested captures each get their records; configure() keeps both sinks."""
    configure(console_format="off")
    log = get_logger("app")
    with capture_records() as outer:
        log.info("one")
        with capture_records() as inner:
            configure(console_format="off", redact_keys={"user"})
            log.info("two", user="ann")
        log.info("three")
    assert [r["event"] for r in outer] == ["one", "two", "three"]
    assert [(r["event"], r["user"]) for r in inner] == [("two", "***")]


# the pytest plugin: runlog_run


def test_runlog_run_closes_the_run_of_a_failing_test(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A test failing mid-step: its run ends failed; the next test starts a run."""
    result = run_session(
        pytester,
        monkeypatch,
        """
        import pytest
        import runlog
        from runlog._config import current_settings

        def test_first(runlog_run):
            with runlog_run.step(1):
                runlog.get_logger("t", component="adapter").info("first")

        def test_fails_in_the_middle(runlog_run):
            runlog.configure(console_format="off", console_level="error")
            with runlog_run.step(1):
                runlog.get_logger("t", component="adapter").info("before")
                raise RuntimeError("boom in the middle")

        def test_next_starts_a_run(tmp_path):
            assert runlog.LogContext.get_instance().run_id is None
            assert current_settings().console_level == 20
            with runlog.start_run("pytest", "own", tmp_path / "runs",
                                  archive=False) as run:
                runlog.get_logger("t", component="adapter").info("own run")

        def test_leaves_another_context(runlog_run, tmp_path):
            runlog.LogContext.get_instance().set_run_context(
                "stray", "fw", tmp_path / "stray" / "logs"
            )

        @pytest.mark.parametrize("name", ["a b", "c/d"])
        def test_param(runlog_run, name):
            assert runlog.LogContext.get_instance().run_id == runlog_run.run_id

        @pytest.mark.runlog(archive=True, metadata={"model": "m1"})
        def test_marker(runlog_run):
            pass

        def test_finished_by_the_test(runlog_run):
            runlog_run.finish("interrupted")
        """,
    )
    result.assert_outcomes(passed=7, failed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ContextError: the test left run 'stray' as the current run context*",
            "*RuntimeError: boom in the middle*",
        ]
    )
    runs = run_jsons(pytester.path)
    assert {run_id: info["status"] for run_id, info in runs.items()} == {
        "test_first": "success",
        "test_fails_in_the_middle": "failed",
        "own": "success",
        "test_leaves_another_context": "success",
        "test_param-a_b": "success",
        "test_param-c_d": "success",
        "test_marker": "success",
        "test_finished_by_the_test": "interrupted",
    }
    failed = runs["test_fails_in_the_middle"]
    assert failed["error_type"] == "RuntimeError"
    assert failed["error"] == "boom in the middle"
    assert runs["test_marker"]["metadata"] == {"model": "m1"}
    [marker_dir] = pytester.path.rglob("runs/pytest/test_marker")
    assert (marker_dir / "run.tar.gz").is_file()
    [failed_dir] = pytester.path.rglob("runs/pytest/test_fails_in_the_middle")
    assert not (failed_dir / "run.tar.gz").exists()
    step_end = [
        r
        for r in read_records(failed_dir / "logs" / "step_001" / "orchestrator.log")
        if r["event"] == "step_end"
    ]
    assert [(r["status"], r["error"]) for r in step_end] == [
        ("failed", "boom in the middle")
    ]
