"""Credentials never reach a step log, combined.log, run.json, summary or archive."""

from __future__ import annotations

import dataclasses
import logging
import sys
import tarfile
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import structlog

from runlog import Run, configure, get_logger, start_run
from runlog.archive import _codecs, find_archive
from tests.reliability._checks import add_figures

pytestmark = pytest.mark.reliability


def secret(label: str) -> str:
    """A distinctive fake credential, easy to grep for."""
    return f"sk-{label}-7f3a9c1e5b"


@dataclasses.dataclass
class ClientConfig:
    """A config object a user may log whole."""

    model: str
    api_key: str


class ModelLike:
    """Something with pydantic's model_dump()."""

    def __init__(self, password: str) -> None:
        self.password = password

    def model_dump(self, **kwargs: Any) -> dict[str, Any]:
        return {"user": "u", "password": self.password}


def every_text(run_dir: Path) -> dict[str, bytes]:
    """Every file of the run (hidden ones too) and every archive member, by name."""
    found: dict[str, bytes] = {}
    for path in sorted(run_dir.rglob("*")):
        if path.is_file():
            found[path.relative_to(run_dir).as_posix()] = path.read_bytes()
    archive = find_archive(run_dir)
    assert archive is not None
    with (
        _codecs.open_reader(archive) as stream,
        tarfile.open(fileobj=stream, mode="r|") as tar,
    ):
        for member in tar:
            handle = tar.extractfile(member) if member.isreg() else None
            if handle is not None:
                found[f"{archive.name}:{member.name}"] = handle.read()
    return found


def leaks(run_dir: Path, secrets: dict[str, str]) -> dict[str, list[str]]:
    """For each secret that is found anywhere, the files it is in."""
    texts = every_text(run_dir)
    found: dict[str, list[str]] = {}
    for label, value in secrets.items():
        needles = (value.encode(), value.encode("unicode_escape"))
        where = [n for n, data in texts.items() if any(x in data for x in needles)]
        if where:
            found[label] = where
    return found


def use_credentials(
    run: Run,
    s: Callable[..., str],
    must: dict[str, str],
    cannot: dict[str, str],
) -> None:
    """Pass credentials every way a user might, then fail the run with one."""
    log = get_logger("app", component="adapter")
    stdlib = logging.getLogger("httpx")
    with run, run.step(1, name="call"):
        log.info(
            "request",
            api_key=s("api_key"),
            Authorization=f"Bearer {s('authorization')}",
            headers={"X-Api-Key": s("header"), "Cookie": s("cookie")},
            attempts=[{"client_secret": s("nested_list")}],
            pair=("x", {"db_password": s("tuple")}),
            session_token=s("suffix_token"),
            prompt_tokens=12,
        )
        log.info("config", config=ClientConfig("m", s("dataclass")))
        log.info("model", user=ModelLike(s("model_dump")))
        log.info("ordered", opts=OrderedDict(password=s("ordered_dict")))
        log.info("default", opts=defaultdict(int, {"token": s("defaultdict")}))
        bound = structlog.contextvars.bind_contextvars(token=s("contextvar"))
        log.info("bound")
        structlog.contextvars.reset_contextvars(**bound)
        stdlib.info("sent", extra={"authorization": s("stdlib_extra")})
        # a credential seen under a key is scrubbed from later free text
        log.info(f"retrying with {must['api_key']}")
        stdlib.warning("auth failed for key %s", must["header"])
        log.info("env", note=f"using {must['env']} from the environment")
        log.info("nested text", detail={"text": f"key={must['cookie']}"})
        # runlog cannot tell these are credentials
        log.info(f"first sighting {s('free_text', cannot)}")
        log.info("short", note="pw=abc12")  # 5 chars: too short to scrub
        try:
            raise ValueError(f"upstream rejected {must['api_key']}")
        except ValueError:
            log.exception("call failed")
        raise RuntimeError(f"giving up on {must['tuple']}")


@pytest.fixture
def finished_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, dict[str, str], dict[str, str]]:
    """
    A failed run that passed credentials every way a user might.

    Returns the run dir, the secrets that must be redacted, and the ones
    runlog cannot know about (documented as not redacted).
    """
    must: dict[str, str] = {}
    cannot: dict[str, str] = {}

    def s(label: str, table: dict[str, str] | None = None) -> str:
        value = secret(label)
        (must if table is None else table)[label] = value
        return value

    monkeypatch.setenv("OPENAI_API_KEY", s("env"))
    monkeypatch.setattr(
        sys, "argv", ["orchestrator", "--api-key", s("argv"), f"--token={s('argv2')}"]
    )
    configure(console_format="off")
    run = start_run(
        "fw",
        "r1",
        tmp_path / "runs",
        metadata={"model": "m", "auth": {"password": s("metadata")}},
    )
    with pytest.raises(RuntimeError):
        use_credentials(run, s, must, cannot)
    return run.run_dir, must, cannot


def test_credentials_are_redacted_everywhere(
    finished_run: tuple[Path, dict[str, str], dict[str, str]],
) -> None:
    """
    No credential passed as a credential-looking key's value, nested, in env
    or seen before and repeated in text, exceptions or run.json, is written.
    """
    run_dir, must, _ = finished_run
    assert leaks(run_dir, must) == {}
    texts = every_text(run_dir)
    assert b'"api_key":"***"' in texts["logs/step_001/adapter.log"]
    assert b'"prompt_tokens":12' in texts["logs/step_001/adapter.log"]
    assert set(texts) >= {
        "logs/combined.log",
        "logs/run.json",
        "logs_summary.txt",
        "run.tar.gz:logs/step_001/adapter.log",
        "run.tar.gz:logs/combined.log",
    }
    add_figures("secrets", secrets=len(must), leaks=0, files=len(texts))


def test_what_is_not_redacted_is_as_documented(
    finished_run: tuple[Path, dict[str, str], dict[str, str]],
) -> None:
    """A credential runlog was never told about, in free text, is written as is."""
    run_dir, _, cannot = finished_run
    assert set(leaks(run_dir, cannot)) == {"free_text"}
    assert b"pw=abc12" in (run_dir / "logs" / "step_001" / "adapter.log").read_bytes()


def test_a_finish_reason_repeating_a_credential_is_scrubbed(tmp_path: Path) -> None:
    """finish(reason=...) quoting a credential seen before: run.json has ***."""
    configure(console_format="off")
    run = start_run("fw", "r1", tmp_path / "runs", archive=False)
    get_logger("app").info("login", password=secret("reason"))
    run.finish("failed", reason=f"login with {secret('reason')} refused")
    data = (run.logs_dir / "run.json").read_text()
    assert secret("reason") not in data
    assert "login with *** refused" in data
    assert secret("reason") not in (run.run_dir / "logs_summary.txt").read_text()
