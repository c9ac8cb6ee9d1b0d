"""runlog diff on runs made by the real library, each in its own process."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import orjson
import pytest

from runlog import cli
from runlog._text import width_of

HOSTILE = "<script>alert(1)</script> `rm -rf /` | cell | [x](http://e.invalid)"

ORCHESTRATOR = textwrap.dedent(
    """
    import sys
    import runlog

    runs_dir, run_id, tokens, error = sys.argv[1:5]
    tokens = int(tokens)
    runlog.configure(console_format="off")
    run = runlog.start_run("demo", run_id, runs_dir=runs_dir)
    log = runlog.get_logger("agent", component="adapter")


    def check(got):
        if error:
            raise ValueError(error.replace("GOT", repr(got)))


    for n, name in enumerate(("plan", "act", "report"), 1):
        with run.step(n, name):
            log.info("api_call", url="https://api.example.invalid/v1/chat")
            log.info(
                "llm_request",
                prompt_tokens=tokens,
                completion_tokens=tokens // 2,
                total_tokens=tokens + tokens // 2,
            )
            if n == 2:
                try:
                    check("goal")
                except ValueError:
                    log.exception("answer_rejected")
    run.finish()
    """
)


def make_run(runs_dir: Path, run_id: str, tokens: int, error: str = "") -> Path:
    """A finished three-step run written by a separate process; its directory."""
    subprocess.run(
        [sys.executable, "-c", ORCHESTRATOR, str(runs_dir), run_id, str(tokens), error],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return runs_dir / "demo" / run_id


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Baseline 'a'; 'b' with one new error and 30% more tokens; 'h' hostile text."""
    runs_dir = tmp_path_factory.mktemp("diff") / "runs"
    return {
        "a": make_run(runs_dir, "run-a", 100),
        "b": make_run(runs_dir, "run-b", 130, "expected 'gol', got GOT"),
        "h": make_run(runs_dir, "run-h", 100, HOSTILE),
    }


def diff(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``runlog diff ARGV``: exit code, stdout, stderr."""
    code = cli.main(["diff", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_diff_shows_the_new_error_and_token_deltas(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Text: status, tokens +30%, the one new fingerprint with its place; exit 0."""
    code, out, _ = diff(capsys, str(runs["a"]), str(runs["b"]))

    assert code == 0
    assert out.startswith("A: demo/run-a (SUCCESS)\nB: demo/run-b (SUCCESS)\n")
    assert "Tokens: 450 -> 585 (+135, +30.0%)\n" in out
    assert "Errors: 0 -> 1 records | new fingerprints: 1 | resolved: 0\n" in out
    assert (
        "== New errors (1) ==\n"
        "  ValueError: expected <str>, got <str> (<string> in check)\n"
        "    ValueError: expected 'gol', got 'goal'\n"
        "    at step_002/adapter.log:3 (1x, steps 002)\n"
    ) in out
    assert "Step 002 (act): SUCCESS\n  tokens 150 -> 195 (+45, +30.0%)" in out
    assert all(width_of(line) <= 80 for line in out.splitlines())


def test_check_fails_on_a_new_error_naming_the_threshold(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """--check alone allows no new fingerprint: exit 1, the threshold and excess."""
    code, out, err = diff(capsys, str(runs["a"]), str(runs["b"]), "--check")

    assert code == 1
    assert "--max-new-errors 0: CROSSED by 1\n" in out
    assert "runlog: check failed: --max-new-errors 0 crossed by 1" in err


@pytest.mark.parametrize(
    ("options", "code", "crossed"),
    [
        (["--max-new-errors", "1"], 0, []),
        (
            ["--max-token-increase", "10%"],
            1,
            ["--max-token-increase 10% crossed by 20"],
        ),
        (["--max-token-increase", "30%"], 0, []),
        (
            ["--max-token-increase", "100"],
            1,
            ["--max-token-increase 100 crossed by 35"],
        ),
        (["--max-token-increase", "135"], 0, []),
        (["--max-duration-increase", "100000%"], 0, []),
        (
            ["--max-new-errors", "0", "--max-token-increase", "5%"],
            1,
            [
                "--max-new-errors 0 crossed by 1",
                "--max-token-increase 5% crossed by 25",
            ],
        ),
    ],
)
def test_thresholds_cross_or_not(
    runs: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    options: list[str],
    code: int,
    crossed: list[str],
) -> None:
    """Each threshold fails the check above its limit and passes at or under it."""
    got, out, err = diff(capsys, str(runs["a"]), str(runs["b"]), *options)

    assert got == code
    assert [line for line in err.splitlines() if "check failed" in line] == [
        line for line in err.splitlines() if any(c in line for c in crossed)
    ]
    assert len(err.splitlines()) == len(crossed)
    assert "== Checks ==" in out


def test_json_shape(runs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """--json: runs, metrics with deltas, three steps, one new error group."""
    code, out, _ = diff(capsys, str(runs["a"]), str(runs["b"]), "--json")

    doc = orjson.loads(out)
    assert code == 0
    assert (doc["a"]["run_id"], doc["b"]["run_id"]) == ("run-a", "run-b")
    assert doc["metrics"]["total_tokens"] == {
        "a": 450,
        "b": 585,
        "delta": 135,
        "pct": 30.0,
    }
    assert [(s["step"], s["name_b"], s["status_b"]) for s in doc["steps"]] == [
        (1, "plan", "SUCCESS"),
        (2, "act", "SUCCESS"),
        (3, "report", "SUCCESS"),
    ]
    (group,) = doc["new_errors"]
    assert group["kind"] == "ValueError"
    assert group["message"] == "expected <str>, got <str>"
    assert group["steps"] == [2]
    assert "checks" not in doc


def test_markdown_escapes_hostile_record_text(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """--format markdown: a hostile message becomes inert text, never a tag or code."""
    code, out, _ = diff(capsys, str(runs["a"]), str(runs["h"]), "--format", "markdown")

    assert code == 0
    assert out.startswith("### runlog diff: demo/run-a &rarr; demo/run-h\n")
    assert "<script>" not in out and "`" not in out and "](" not in out
    (line,) = [line for line in out.splitlines() if "&lt;script&gt;" in line]
    assert "&#124; cell &#124;" in line and "&#96;rm -rf /&#96;" in line
    rows = [line for line in out.splitlines() if line.startswith("| 00")]
    assert [row.count("|") for row in rows] == [9, 9, 9]


def test_archives_run_ids_and_urls_are_runs_too(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """RUN may be an archive, a run id under --runs-dir, or a file:// URL."""
    pytest.importorskip("fsspec", reason="URLs need the remote extra")
    archive = runs["b"] / "run.tar.gz"
    url = runs["a"].absolute().as_uri()

    by_archive = diff(capsys, str(runs["a"]), str(archive), "--json")
    by_id = diff(
        capsys, "run-a", "run-b", "--runs-dir", str(runs["a"].parent.parent), "--json"
    )
    by_url = diff(capsys, url, str(runs["b"]), "--json")

    assert by_archive[0] == by_id[0] == by_url[0] == 0
    assert (
        orjson.loads(by_archive[1]) == orjson.loads(by_id[1]) == orjson.loads(by_url[1])
    )


def test_bad_threshold_and_missing_run_are_usage_errors(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A limit that is not a number, or a RUN that does not exist: exit 2."""
    code, _, err = diff(
        capsys, str(runs["a"]), str(runs["b"]), "--max-token-increase", "lots"
    )
    assert code == 2
    assert "'lots'" in err

    code, _, err = diff(capsys, str(runs["a"]), str(tmp_path / "gone"))
    assert code == 2
    assert err.startswith("runlog: error: run ") and "gone" in err


def test_summarize_baseline_adds_a_changes_section(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """summarize RUN --baseline OTHER: a short 'Changes since' block; --check too."""
    run_b = tmp_path / "demo" / "run-b"
    shutil.copytree(runs["b"], run_b)

    assert cli.main(["summarize", str(run_b), "--baseline", str(runs["a"])]) == 0

    text = (run_b / "logs_summary.txt").read_text()
    block = text.split("== Changes since run-a ==\n", 1)[1].split("\n\n", 1)[0]
    assert block.splitlines()[:4] == [
        "Status: SUCCESS",
        "Steps changed (3): 001, 002, 003",
        "Errors: 0 -> 1 records (1 new, 0 resolved)",
        "  new: ValueError: expected <str>, got <str> (<string> in check)",
    ]
    assert "Tokens: 450 -> 585 (+135, +30.0%)" in block.splitlines()
    assert len(block.splitlines()) <= 9
    assert all(width_of(line) <= 80 for line in text.splitlines())
    capsys.readouterr()
    assert (
        cli.main(
            [
                "summarize",
                str(run_b),
                "--check",
                "--baseline",
                "run-a",
                "--runs-dir",
                str(runs["a"].parent.parent),
            ]
        )
        == 0
    )
    assert cli.main(["summarize", str(run_b), "--check"]) == 1
