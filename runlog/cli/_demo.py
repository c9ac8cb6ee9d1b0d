"""The small orchestrator behind ``runlog demo``: five steps, four components."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import orjson

from .. import _paths
from .._files import atomic_write
from .._logger import RunlogLogger
from .._status import read_run_json
from ..loggers import get_logger
from ..run import Run, start_run

FRAMEWORK: Final = "demo"
MODEL: Final = "demo-llm-1"
STEPS: Final = 5
API_URL: Final = "https://api.example.invalid/v1/chat/completions"
DATA_URL: Final = "https://data.example.invalid/questions.json"
# (question, the fake model's answer, the expected answer): the third answer
# is wrong on purpose so the validator has something to reject
QUESTIONS: Final = (
    ("What is 2 + 2?", "4", "4"),
    ("Name a prime number between 10 and 12.", "11", "11"),
    ("Spell 'log' backwards.", "glo", "gol"),
)
_PAUSE_S: Final = 0.02
# A tool the report step shells out to: a child that joins the run and whose
# print() lands in step_005/stdout.log like the parent's own (see #15).
_TOOL: Final = (
    "import runlog\n"
    "runlog.get_logger('runlog.demo.tool', component='tool').info('tool_started')\n"
    "print('report tool: wrote metrics.json (3 questions)')\n"
)


class RateLimitedError(RuntimeError):
    """The fake API's HTTP 429: the orchestrator retries the step."""


@dataclass(frozen=True, slots=True)
class DemoResult:
    """Where the demo run is and how it ended."""

    run_dir: Path
    status: str
    steps: int
    summary: Path
    archive: Path | None


class FakeLLM:
    """
    An LLM-like client: deterministic answers and token counts, no network.

    Logs what a real adapter would: ``api_call`` per HTTP request and
    ``llm_request`` with ``prompt_tokens``/``completion_tokens``/``total_tokens``;
    its HTTP library logs through a plain stdlib logger, as httpx does.
    """

    def __init__(self) -> None:
        self.log = get_logger("runlog.demo.adapter", component="adapter")
        self.http = logging.getLogger("httpx")
        self.fail_next = 0

    def connect(self) -> None:
        """Log the client set-up; the key is redacted in every file."""
        self.log.info(
            "client_ready",
            model=MODEL,
            base_url=API_URL.rsplit("/v1", 1)[0],
            api_key="sk-demo-0000-not-a-real-key",
        )

    def complete(self, prompt: str, answer: str) -> str:
        """
        Answer *prompt* with *answer*, logging the call like a real client.

        Raises:
            RateLimitedError: When a failure was scheduled with ``fail_next``.
        """
        self.log.debug("prompt", text=prompt)
        time.sleep(_PAUSE_S)
        if self.fail_next:
            self.fail_next -= 1
            self.http.warning(
                'HTTP Request: POST %s "HTTP/1.1 429 Too Many Requests"', API_URL
            )
            self.log.info("api_call", endpoint="/v1/chat/completions", status=429)
            self.log.warning("rate_limited", retry_after_s=0.05, model=MODEL)
            raise RateLimitedError("429 Too Many Requests from the model API")
        self.http.info('HTTP Request: POST %s "HTTP/1.1 200 OK"', API_URL)
        self.log.info("api_call", endpoint="/v1/chat/completions", status=200)
        prompt_tokens = 8 + 2 * len(prompt.split())
        completion_tokens = 3 + len(answer)
        self.log.info(
            "llm_request",
            model=MODEL,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
        )
        return answer


def _load_questions(log: RunlogLogger) -> list[str]:
    logging.getLogger("httpx").info('HTTP Request: GET %s "HTTP/1.1 200 OK"', DATA_URL)
    questions = [question for question, _, _ in QUESTIONS]
    log.info("questions_loaded", count=len(questions), source=DATA_URL)
    get_logger("runlog.demo.metrics", component="metrics").info(
        "dataset_stats", questions=len(questions)
    )
    return questions


def _plan(log: RunlogLogger, llm: FakeLLM, questions: list[str]) -> None:
    llm.connect()
    plan = llm.complete(
        f"Plan how to answer {len(questions)} short questions.", "answer each"
    )
    log.info("plan_ready", plan=plan, questions=len(questions))
    time.sleep(_PAUSE_S)
    # a person approves the plan; the summary counts `hitl` events
    log.info(
        "hitl",
        question=f"Run the plan on {len(questions)} questions?",
        answer="approved",
        reviewer="demo-reviewer",
    )


def _answer(llm: FakeLLM) -> list[str]:
    return [llm.complete(question, answer) for question, answer, _ in QUESTIONS]


def _check_answer(got: str, expected: str) -> None:
    if got != expected:
        raise ValueError(f"expected {expected!r}, got {got!r}")


def _validate(answers: list[str]) -> int:
    log = get_logger("runlog.demo.validator", component="validator")
    accepted = 0
    for item, ((question, _, expected), got) in enumerate(
        zip(QUESTIONS, answers, strict=True), start=1
    ):
        try:
            _check_answer(got, expected)
        except ValueError:
            # a rejected answer is recorded and the run goes on without it
            log.exception("answer_rejected", item=item, question=question)
            continue
        accepted += 1
        log.info("answer_accepted", item=item)
    # plain output of a step: captured into step_004/stdout.log (see #15)
    print(f"validator: {accepted} of {len(answers)} answers accepted")
    get_logger("runlog.demo.metrics", component="metrics").info(
        "validation", accepted=accepted, rejected=len(answers) - accepted
    )
    return accepted


def _report(run: Run, accepted: int) -> None:
    metrics = {
        "questions": len(QUESTIONS),
        "accepted": accepted,
        "accuracy": round(accepted / len(QUESTIONS), 3),
    }
    get_logger("runlog.demo.metrics", component="metrics").info(
        "run_metrics", **metrics
    )
    subprocess.run(
        [sys.executable, "-c", _TOOL], check=True
    )  # our own code, our interpreter
    # read by the summary (SPEC §4): the orchestrator's own numbers
    atomic_write(
        run.run_dir / _paths.METRICS_JSON,
        orjson.dumps(metrics, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
        + b"\n",
    )
    # a run-level component: always logs/reconciliation.log, whatever the step
    get_logger("runlog.demo", component="reconciliation").info(
        "reconciled",
        expected=len(QUESTIONS),
        answered=len(QUESTIONS),
        accepted=accepted,
    )


def run_demo(
    runs_dir: str | os.PathLike[str], *, archive_format: str = "gz"
) -> DemoResult:
    """
    Run the demo orchestrator: a complete run with logs, summary and archive.

    Five steps (load questions, plan with a HITL approval, answer with the
    LLM-like adapter — its first attempt is rate-limited and retried —,
    validate, which rejects one answer and carries on, and report). Takes
    about half a second.

    Returns:
        Where the run is and how it ended.
    """
    log = get_logger("runlog.demo", component="orchestrator")
    llm = FakeLLM()
    metadata = {"model": MODEL, "dataset": "demo-questions", "purpose": "runlog demo"}
    with start_run(
        FRAMEWORK,
        runs_dir=runs_dir,
        metadata=metadata,
        archive_format=archive_format,
    ) as run:
        log.info("plan", steps=STEPS, questions=len(QUESTIONS))
        with run.step(1, "load_questions"):
            questions = _load_questions(log)
        with run.step(2, "plan"):
            _plan(log, llm, questions)
        llm.fail_next = 1
        answers: list[str] = []
        for attempt in (1, 2):
            try:
                with run.step(3, "answer"):
                    answers = _answer(llm)
                break
            except RateLimitedError:
                if attempt == 2:
                    raise
                log.warning(
                    "retrying_step",
                    failed_step=3,
                    next_attempt=attempt + 1,
                    reason="rate limited",
                )
                time.sleep(0.05)
        with run.step(4, "validate"):
            accepted = _validate(answers)
        with run.step(5, "report"):
            _report(run, accepted)
    info = read_run_json(run.logs_dir) or {}
    archive = run.archive_info.path if run.archive_info is not None else None
    return DemoResult(
        run_dir=run.run_dir,
        status=str(info.get("status", "unknown")),
        steps=STEPS,
        summary=run.summary_path or _paths.summary_file(run.run_dir),
        archive=archive or _paths.find_archive(run.run_dir),
    )


def short_path(path: Path) -> str:
    """*path* relative to the working directory when it is below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def next_commands(result: DemoResult) -> list[str]:
    """The commands worth trying on the demo run, with its real paths."""
    run = short_path(result.run_dir)
    runs_dir = short_path(result.run_dir.parent.parent)
    lines = [
        f"runlog ls {runs_dir}",
        f"runlog show {run} --step 3 --level warning",
        f"runlog show {run} --component adapter --grep llm_request",
        f"runlog tail {run} -n 5",
        f"cat {short_path(result.summary)}",
    ]
    if result.archive is not None:
        archive = short_path(result.archive)
        lines.insert(3, f"runlog show {archive} --level error")
        lines.append(f"runlog verify {run}")
    return lines
