"""
runlog in someone else's process: stdlib logging, the console, structlog (see #14).

Every test runs a small application in a fresh interpreter, because what is
under test is global state (the root logger, logging.lastResort, structlog's
configuration) that must not leak between tests, and because a program's
real stderr is what shows whether a line printed twice.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Final

import pytest

from tests.conftest import files_under, read_records

# Helpers every application below starts with: the root logger's state as
# JSON, and one JSON line per report on stdout.
PRELUDE: Final = """
import json, logging, sys, time, warnings
from pathlib import Path

import runlog
from runlog import configure, get_logger, start_run

def root_state():
    root = logging.getLogger()
    return {
        "level": root.level,
        "handlers": [f"{type(h).__name__}@{id(h)}" for h in root.handlers],
        "handler_filters": [[repr(f) for f in h.filters] for h in root.handlers],
        "handler_levels": [h.level for h in root.handlers],
        "root_filters": [repr(f) for f in root.filters],
        "last_resort": repr(logging.lastResort),
        "disable": root.manager.disable,
    }

def report(tag, **values):
    print(json.dumps({"tag": tag, **values}), flush=True)

def mark(text):
    sys.stderr.write(f"--{text}--\\n")
    sys.stderr.flush()
"""


def app(tmp_path: Path, body: str) -> list[str]:
    """The command that runs *body* (after PRELUDE) as a script, warnings as errors."""
    script = tmp_path / "app.py"
    script.write_text(PRELUDE + textwrap.dedent(body), encoding="utf-8")
    return [sys.executable, "-W", "error", str(script)]


def run_app(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    """Run the application *body* in tmp_path; fails the test if it fails."""
    done = subprocess.run(
        app(tmp_path, body),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def reports(stdout: str) -> dict[str, dict[str, Any]]:
    """The application's reports, by tag."""
    found: dict[str, dict[str, Any]] = {}
    for line in stdout.splitlines():
        value = json.loads(line)
        found[value.pop("tag")] = value
    return found


def after_mark(stderr: str, text: str) -> str:
    """What the application printed to stderr after ``mark(text)``."""
    return stderr.split(f"--{text}--\n", 1)[1]


def app_lines(text: str) -> list[str]:
    """The lines of *text* the application's own handler printed."""
    return [line for line in text.splitlines() if line.startswith("APP ")]


def only_step_files(run_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Every step file of the run at *run_dir*, parsed."""
    logs = run_dir / "logs"
    return {
        rel: read_records(logs / rel)
        for rel in sorted(files_under(logs))
        if rel.startswith("step_")
    }


RUN_DIR: Final = Path("runs") / "app" / "r1"

# One run: a step with a third-party record, then an end chosen by the test.
ONE_RUN: Final = """
report("before", **root_state())
try:
    with start_run("app", "r1", "runs", archive=False) as run:
        with run.step(1):
            logging.getLogger("httpx").info("GET /v1")
            report("during", **root_state())
            {end}
except ValueError:
    pass
report("after", **root_state())
"""


@pytest.mark.parametrize(
    "setup",
    [
        "",
        "logging.basicConfig(level=logging.WARNING, format='APP %(message)s')",
        "logging.getLogger().setLevel(logging.ERROR)",
    ],
    ids=["bare", "basicConfig", "root-at-error"],
)
@pytest.mark.parametrize(
    "end", ["pass", "raise ValueError('step broke')"], ids=["success", "failed"]
)
def test_root_logger_is_restored_after_a_run(
    tmp_path: Path, setup: str, end: str
) -> None:
    """Root level, handlers and lastResort are identical before and after a run."""
    done = run_app(tmp_path, setup + ONE_RUN.format(end=end))
    seen = reports(done.stdout)
    assert seen["after"] == seen["before"]
    during = seen["during"]
    assert during["level"] == logging.INFO  # lowered for third-party INFO
    before = seen["before"]["handlers"]
    assert during["handlers"][: len(before)] == before
    assert during["handlers"][-1].startswith("DynamicFileHandler@")
    [record] = read_records(tmp_path / RUN_DIR / "logs" / "step_001" / "external.log")
    assert (record["event"], record["logger"]) == ("GET /v1", "httpx")


def test_root_logger_is_restored_after_sigterm(tmp_path: Path) -> None:
    """A run ended by SIGTERM gives the root logger back as it found it."""
    body = """
    logging.basicConfig(level=logging.WARNING, format="APP %(message)s")
    report("before", **root_state())
    try:
        with start_run("app", "r1", "runs", archive=False) as run:
            with run.step(1):
                report("ready")
                while True:
                    time.sleep(0.01)
    except KeyboardInterrupt:
        report("after", **root_state())
    """
    child = subprocess.Popen(
        app(tmp_path, body),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        started = child.stdout.readline() + child.stdout.readline()
        assert json.loads(started.splitlines()[-1])["tag"] == "ready"
        child.send_signal(signal.SIGTERM)
        out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 0, err
    seen = reports(started + out)
    assert seen["after"] == seen["before"]
    info = json.loads((tmp_path / RUN_DIR / "logs" / "run.json").read_text())
    assert (info["status"], info["signal"]) == ("interrupted", "SIGTERM")


def test_root_logger_is_restored_by_clear_run_context(tmp_path: Path) -> None:
    """set_run_context then clear_run_context leaves the root logger as it was."""
    done = run_app(
        tmp_path,
        """
        logging.getLogger().setLevel(logging.CRITICAL)
        report("before", **root_state())
        context = runlog.LogContext.get_instance()
        context.set_run_context("r1", "app", "runs/app/r1/logs")
        context.set_run_context("r2", "app", "runs/app/r2/logs")
        report("during", **root_state())
        context.clear_run_context()
        report("after", **root_state())
        """,
    )
    seen = reports(done.stdout)
    assert seen["during"]["level"] == logging.INFO
    assert seen["after"] == seen["before"]


def test_basicconfig_after_a_run_prints(tmp_path: Path) -> None:
    """logging.basicConfig after a run configures logging as if runlog never ran."""
    done = run_app(
        tmp_path,
        """
        with start_run("app", "r1", "runs", archive=False) as run:
            with run.step(1):
                logging.getLogger("lib").warning("in the run")
        mark("after")
        logging.basicConfig(
            level=logging.DEBUG, format="APP %(levelname)s %(name)s: %(message)s"
        )
        logging.getLogger("lib").debug("debug after the run")
        report("after", level=logging.getLogger().level)
        """,
    )
    assert after_mark(done.stderr, "after") == "APP DEBUG lib: debug after the run\n"
    assert reports(done.stdout)["after"]["level"] == 10


def test_no_duplicate_console_lines_with_an_app_stream_handler(tmp_path: Path) -> None:
    """With the app's StreamHandler a foreign record prints once, runlog's too."""
    done = run_app(
        tmp_path,
        """
        logging.basicConfig(format="APP %(levelname)s %(name)s: %(message)s")
        configure(console_level="info")
        with start_run("app", "r1", "runs", archive=False) as run:
            mark("run")
            with run.step(1):
                logging.getLogger("httpx").warning("slow call")
                logging.getLogger("httpx").info("GET /v1")
                get_logger("orch", component="adapter").info("own record", n=1)
            mark("end")
        """,
    )
    printed = after_mark(done.stderr, "run").split("--end--\n")[0].splitlines()
    assert [line for line in printed if "slow call" in line] == [
        "APP WARNING httpx: slow call"
    ]
    assert [line for line in printed if "GET /v1" in line] == []  # below the app's
    assert [line for line in printed if "own record" in line] == [
        next(line for line in printed if "[adapter] step=1 own record n=1" in line)
    ]
    assert all("[external]" not in line for line in printed)
    steps = only_step_files(tmp_path / RUN_DIR)
    assert [r["event"] for r in steps["step_001/external.log"]] == [
        "slow call",
        "GET /v1",
    ]


def test_handler_on_an_app_logger_also_counts_as_its_console(tmp_path: Path) -> None:
    """A console handler on the app's own logger stops runlog echoing its records."""
    done = run_app(
        tmp_path,
        """
        mine = logging.getLogger("myapp")
        mine.setLevel(logging.INFO)
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("MYAPP %(message)s"))
        mine.addHandler(handler)
        with start_run("app", "r1", "runs", archive=False) as run:
            mark("run")
            with run.step(1):
                logging.getLogger("myapp.db").info("query done")
                logging.getLogger("thirdparty").warning("third")
            mark("end")
        """,
    )
    printed = after_mark(done.stderr, "run").split("--end--\n")[0].splitlines()
    assert [line for line in printed if "query done" in line] == ["MYAPP query done"]
    third = [line for line in printed if "third" in line]
    assert len(third) == 1 and "[external] step=1 third" in third[0]


def test_app_handlers_print_no_more_during_a_run(tmp_path: Path) -> None:
    """Lowering root for the step files does not make the app's console noisier."""
    done = run_app(
        tmp_path,
        """
        logging.basicConfig(level=logging.WARNING, format="APP %(name)s: %(message)s")
        logging.getLogger("myapp").setLevel(logging.INFO)
        with start_run("app", "r1", "runs", archive=False) as run:
            mark("run")
            with run.step(1):
                logging.getLogger("somelib").info("library chatter")
                logging.getLogger("myapp.jobs").info("job started")
                mark("app changes its handler")
                logging.getLogger().handlers[0].setLevel(logging.INFO)
                logging.getLogger("somelib").info("wanted now")
        """,
    )
    printed = after_mark(done.stderr, "run")
    before, after = printed.split("--app changes its handler--\n")
    assert app_lines(before) == ["APP myapp.jobs: job started"]
    assert app_lines(after) == ["APP somelib: wanted now"]
    events = [
        r["event"] for r in only_step_files(tmp_path / RUN_DIR)["step_001/external.log"]
    ]
    assert events == ["library chatter", "job started", "wanted now"]


def test_nothing_of_runlogs_prints_after_a_run(tmp_path: Path) -> None:
    """After a run foreign records print as stdlib prints them, and are not written."""
    done = run_app(
        tmp_path,
        """
        with start_run("app", "r1", "runs", archive=False) as run:
            mark("run")
            with run.step(1):
                logging.getLogger("lib").warning("warned in the run")
        mark("after")
        logging.getLogger("lib").warning("warned after the run")
        logging.getLogger("lib").info("info after the run")
        logging.getLogger("lib").error("error after the run")
        """,
    )
    during = after_mark(done.stderr, "run").split("--after--\n")[0].splitlines()
    assert [line for line in during if "warned in the run" in line] == [
        next(line for line in during if "[external] step=1 warned in the run" in line)
    ]
    # logging.lastResort again: the bare message, WARNING and up
    assert after_mark(done.stderr, "after") == (
        "warned after the run\nerror after the run\n"
    )
    logs = tmp_path / RUN_DIR / "logs"
    assert b"after the run" not in b"".join(
        (logs / rel).read_bytes() for rel in files_under(logs)
    )


def test_near_miss_keys_warn_at_the_caller(tmp_path: Path) -> None:
    """get_logger warns, pointing at its caller, when a key misspells a parameter."""
    done = run_app(
        tmp_path,
        """
        keys = ["componet", "Component", "components", "compnent", "nmae", "Name",
                "opponent", "game", "component_id", "names_seen", "prompt_tokens"]
        for key in keys:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                line = sys._getframe().f_lineno + 1
                get_logger("m", **{key: "adapter"})
            report(key, warnings=[
                {"category": w.category.__name__, "message": str(w.message),
                 "file": w.filename, "line": w.lineno, "expected_line": line}
                for w in caught
            ])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            typo = get_logger("m", componet="adapter")
        with start_run("app", "r1", "runs", archive=False) as run:
            with run.step(1):
                typo.info("where does it go")
                get_logger("m").info("no component")
        """,
    )
    seen = reports(done.stdout)
    script = str(tmp_path / "app.py")
    expected = {
        "componet": "component",
        "Component": "component",
        "components": "component",
        "compnent": "component",
        "nmae": "name",
        "Name": "name",
    }
    for key, parameter in expected.items():
        [warning] = seen[key]["warnings"]
        assert warning["category"] == "RuntimeWarning"
        assert (warning["file"], warning["line"]) == (script, warning["expected_line"])
        assert f"{key}='adapter'" in warning["message"]
        assert f"misspelling of {parameter!r}" in warning["message"]
    for key in ("opponent", "game", "component_id", "names_seen", "prompt_tokens"):
        assert seen[key]["warnings"] == [], key
    steps = only_step_files(tmp_path / RUN_DIR)
    assert set(steps) == {"step_001/run.log", "step_001/orchestrator.log"}
    assert [
        (r["event"], r["component"], r.get("componet"))
        for r in steps["step_001/run.log"]
    ] == [
        ("where does it go", "run", "adapter"),
        ("no component", "run", None),
    ]


def test_records_with_no_component_go_to_the_steps_run_log(tmp_path: Path) -> None:
    """Without component=, a record in step 1 lands in step_001/run.log, not logs/."""
    done = run_app(
        tmp_path,
        """
        with start_run("app", "r1", "runs", archive=False) as run:
            with run.step(1):
                get_logger("m").info("in the step")
            get_logger("m").info("outside")
        """,
    )
    assert done.returncode == 0, done.stderr
    logs = tmp_path / RUN_DIR / "logs"
    in_step = (logs / "step_001" / "run.log").read_text()
    assert '"event":"in the step"' in in_step
    assert '"event":"outside"' not in in_step
    assert '"event":"outside"' in (logs / "run.log").read_text()


STRUCTLOG_STDLIB: Final = """
import structlog

structlog.configure(
    processors=[
        structlog.stdlib.filter_by_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso"),
        {renderer},
    ],
    logger_factory=structlog.stdlib.LoggerFactory(),
    wrapper_class=structlog.stdlib.BoundLogger,
    cache_logger_on_first_use=True,
)
handler = logging.StreamHandler(sys.stderr)
handler.setFormatter({formatter})
root = logging.getLogger()
root.addHandler(handler)
root.setLevel(logging.INFO)
slog = structlog.get_logger("app.svc")
with start_run("app", "r1", "runs", archive=False) as run:
    mark("run")
    with run.step(1):
        slog.info("fetched", url="https://example.org/a", items=3)
        slog.bind(component="adapter").warning("retry", attempt=2)
        try:
            {{}}["missing"]
        except KeyError:
            slog.exception("lookup failed", key="missing")
    mark("end")
"""

RENDERERS: Final = {
    "ProcessorFormatter": (
        "structlog.stdlib.ProcessorFormatter.wrap_for_formatter",
        "structlog.stdlib.ProcessorFormatter(processor=structlog.dev.ConsoleRenderer("
        "colors=False, exception_formatter=structlog.dev.plain_traceback))",
    ),
    "render_to_log_kwargs": (
        "structlog.stdlib.render_to_log_kwargs",
        "logging.Formatter('APP %(levelname)s %(name)s: %(message)s')",
    ),
}


@pytest.mark.parametrize("style", list(RENDERERS))
def test_structlog_through_stdlib_lands_in_the_step_with_fields(
    tmp_path: Path, style: str
) -> None:
    """structlog via stdlib lands in the step as external, pairs as fields, once."""
    renderer, formatter = RENDERERS[style]
    done = run_app(
        tmp_path, STRUCTLOG_STDLIB.format(renderer=renderer, formatter=formatter)
    )
    steps = only_step_files(tmp_path / RUN_DIR)
    fetched, failed = steps["step_001/external.log"]
    assert fetched["event"] == "fetched"
    assert (fetched["url"], fetched["items"]) == ("https://example.org/a", 3)
    assert (fetched["logger"], fetched["component"], fetched["step"]) == (
        "app.svc",
        "external",
        1,
    )
    assert fetched["level"] == "info"
    assert not {"level_", "logger_", "_logger", "_name"} & set(fetched)
    assert "timestamp" in fetched  # the app's own processor output is kept
    [retry] = steps["step_001/adapter.log"]
    assert (retry["event"], retry["attempt"], retry["level"]) == ("retry", 2, "warning")
    assert (failed["event"], failed["key"], failed["level"]) == (
        "lookup failed",
        "missing",
        "error",
    )
    assert "KeyError: 'missing'" in failed["exception"]
    printed = after_mark(done.stderr, "run").split("--end--\n")[0]
    assert len([line for line in printed.splitlines() if "fetched" in line]) == 1
    assert "[external]" not in printed


@pytest.mark.parametrize("configured", [True, False], ids=["configured", "default"])
def test_runlog_never_changes_structlogs_configuration(
    tmp_path: Path, configured: bool
) -> None:
    """A whole run leaves structlog's global configuration as the app set it."""
    setup = (
        """
        structlog.configure(
            processors=[structlog.processors.add_log_level,
                        structlog.processors.KeyValueRenderer()],
            logger_factory=structlog.PrintLoggerFactory(sys.stdout),
            wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
            cache_logger_on_first_use=False,
        )
        """
        if configured
        else ""
    )
    done = run_app(
        tmp_path,
        f"""
        import structlog
        import structlog.contextvars
        {textwrap.dedent(setup).strip()}

        def config():
            found = structlog.get_config()
            return (
                structlog.is_configured(),
                [id(p) for p in found["processors"]],
                id(found["processors"]),
                *(id(found[k]) for k in sorted(found) if k != "processors"),
            )

        before = config()
        structlog.contextvars.bind_contextvars(request_id="abc")
        configure(console_format="json")
        with start_run("app", "r1", "runs") as run:
            with run.step(1):
                get_logger("m", component="adapter").info("runlog record")
                logging.getLogger("lib").warning("stdlib record")
        report("same", value=config() == before,
               contextvars=structlog.contextvars.get_contextvars())
        """.replace("\n        ", "\n"),
    )
    seen = reports(
        "\n".join(line for line in done.stdout.splitlines() if line.startswith("{"))
    )
    assert seen["same"] == {"value": True, "contextvars": {"request_id": "abc"}}
    [record] = read_records(tmp_path / RUN_DIR / "logs" / "step_001" / "adapter.log")
    assert (record["event"], record["request_id"]) == ("runlog record", "abc")
