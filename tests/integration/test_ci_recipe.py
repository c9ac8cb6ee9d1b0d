"""The CI recipe of docs/CLI.md, run as written on a fresh git clone (see #17)."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import textwrap
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from runlog import cli, configure, get_logger, start_run
from tests.integration import test_remote  # skips without the remote extras

fsspec = test_remote.fsspec
# the moto S3 server on 127.0.0.1 and a fresh bucket, as test_remote uses them
s3_endpoint = test_remote.s3_endpoint
bucket_url = test_remote.bucket_url
s3_objects = test_remote.s3_objects

REPO = Path(__file__).resolve().parents[2]
CLI_DOC = REPO / "docs" / "CLI.md"
CI_HEADING = "## CI: committed summaries checked on a fresh clone"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "ci",
    "GIT_AUTHOR_EMAIL": "ci@example.invalid",
    "GIT_COMMITTER_NAME": "ci",
    "GIT_COMMITTER_EMAIL": "ci@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
}


def make_run(runs_dir: Path, run_id: str, tokens: int) -> Path:
    """A finished two-step run made by the library, not yet archived."""
    configure(console_format="off")
    run = start_run("agents", run_id, runs_dir=runs_dir, archive=False)
    log = get_logger("agent", component="adapter")
    for n in (1, 2):
        with run.step(n, f"step{n}"):
            log.info(
                "llm_request",
                prompt_tokens=tokens,
                completion_tokens=3,
                total_tokens=tokens + 3,
            )
            if n == 2:
                log.warning("slow_answer", seconds=1.5)
    run.finish()
    return run.run_dir


def runlog_main(*argv: str) -> str:
    """``runlog ARGV`` in process; its stdout (it must exit 0)."""
    out = io.StringIO()
    with redirect_stdout(out):
        assert cli.main(list(argv)) == 0, argv
    return out.getvalue()


def recipe_script() -> str:
    """The `run:` script of the "Verify committed summaries" step on the page."""
    text = CLI_DOC.read_text(encoding="utf-8")
    section = text.split(CI_HEADING, 1)[1].split("\n## ", 1)[0]
    (workflow,) = re.findall(r"```yaml\n(.*?)```", section, re.S)
    lines = workflow.splitlines()
    start = lines.index("      - name: Verify committed summaries")
    run_at = next(i for i in range(start, len(lines)) if lines[i].strip() == "run: |")
    indent = len(lines[run_at]) - len(lines[run_at].lstrip())
    body: list[str] = []
    for line in lines[run_at + 1 :]:
        if line.strip() and len(line) - len(line.lstrip()) <= indent:
            break
        body.append(line)
    return textwrap.dedent("\n".join(body)) + "\n"


def sh(*argv: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run a command that must succeed; its stdout."""
    result = subprocess.run(
        argv,
        cwd=cwd,
        env={**os.environ, **GIT_ENV, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"{argv}: {result.stderr}"
    return result.stdout


def make_repo(root: Path, store: str, runs: int = 2) -> tuple[Path, str]:
    """
    A git repo with archived, uploaded runs committed the documented way.

    Returns the repository and the commit before the runs were added.
    """
    repo = root / "repo"
    repo.mkdir()
    sh("git", "init", "-q", "-b", "main", cwd=repo)
    (repo / ".gitignore").write_text(runlog_main("gitignore"))
    sh("git", "add", ".gitignore", cwd=repo)
    sh("git", "commit", "-q", "-m", "runlog gitignore", cwd=repo)
    base = sh("git", "rev-parse", "HEAD", cwd=repo).strip()
    for number in range(1, runs + 1):
        run_dir = make_run(repo / "runs", f"run-{number}", 100 + 40 * number)
        runlog_main("archive", str(run_dir))
        runlog_main("upload", str(run_dir), store)
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-q", "-m", "runs", cwd=repo)
    return repo, base


def clone(repo: Path, root: Path) -> Path:
    """A fresh clone of *repo*: what CI checks out."""
    sh("git", "clone", "-q", str(repo), str(root / "clone"), cwd=root)
    return root / "clone"


def run_recipe(
    clone_dir: Path, store: str, base_sha: str = ""
) -> subprocess.CompletedProcess[str]:
    """The documented script, as GitHub runs it (bash -eo pipefail), in the clone."""
    bin_dir = str(Path(sys.executable).parent)
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", recipe_script()],
        cwd=clone_dir,
        env={
            **os.environ,
            "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
            "RUNLOG_STORE": store,
            "BASE_SHA": base_sha,
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


SUMMARIES = [f"runs/agents/run-{n}/logs_summary.txt" for n in (1, 2, 3)]


def test_recipe_is_on_the_page() -> None:
    """The page's job verifies each summary with --store and fails if any fails."""
    script = recipe_script()

    assert 'runlog verify "$summary" --store "$RUNLOG_STORE" || status=1' in script
    assert script.rstrip().endswith("exit $status")


def test_ci_recipe_on_a_fresh_clone_with_a_file_store(tmp_path: Path) -> None:
    """Clone holds only summaries; the recipe passes, then fails on each tampering."""
    store_dir = tmp_path / "store"
    store = store_dir.as_uri()
    repo, base = make_repo(tmp_path, store, runs=3)
    tracked = sh("git", "ls-files", cwd=repo).split()
    assert sorted(tracked) == [".gitignore", *SUMMARIES]
    checkout = clone(repo, tmp_path)

    passed = run_recipe(checkout, store, base_sha=base)  # a PR adding the runs

    assert passed.returncode == 0, passed.stderr
    assert [ln for ln in passed.stdout.splitlines() if ln.startswith("OK")] == [
        f"OK  {path}" for path in SUMMARIES
    ]
    assert "runlog-verify-" not in passed.stdout + passed.stderr

    # run-1: its archive swapped for run-2's in the store
    for suffix in ("", ".sha256"):
        shutil.copy(
            store_dir / f"agents/run-2/run.tar.gz{suffix}",
            store_dir / f"agents/run-1/run.tar.gz{suffix}",
        )
    # run-2: its committed summary edited by hand
    summary_2 = checkout / SUMMARIES[1]
    text = summary_2.read_text()
    summary_2.write_text(text.replace("Status: SUCCESS", "Status: FAILED", 1))
    # run-3: its archive missing from the store
    (store_dir / "agents/run-3/run.tar.gz").unlink()

    failed = run_recipe(checkout, store)  # a push: every committed summary

    assert failed.returncode == 1
    assert "OK" not in failed.stdout
    errors = failed.stderr.splitlines()
    assert len(errors) == 3
    swapped = (store_dir / "agents/run-1/run.tar.gz").as_uri()
    assert errors[0].startswith(f"runlog: error: {swapped!r}: SHA-256 ")
    assert errors[0].endswith(
        f", but summary {SUMMARIES[0]!r} records "
        + re.findall(r"SHA-256: +(\w+)", (checkout / SUMMARIES[0]).read_text())[0]
        + ": the stored archive is not the one this summary was made from"
    )
    regenerated_from = (store_dir / "agents/run-2/run.tar.gz").as_uri()
    assert errors[1] == (
        f"runlog: error: summary {SUMMARIES[1]!r} differs from the one regenerated "
        f"from {regenerated_from!r} (2 line(s) differ); first at line 1: committed "
        "'Status: FAILED', regenerated 'Status: SUCCESS'"
    )
    assert errors[2] == (
        f"runlog: error: summary {SUMMARIES[2]!r}: its archive is missing from the "
        f"store: no run.tar.gz under {(store_dir / 'agents/run-3').as_uri()!r} "
        f"(upload the run with `runlog upload RUN {store}`)"
    )


def test_ci_recipe_on_a_fresh_clone_with_s3(
    tmp_path: Path, bucket_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same recipe against S3 (moto on 127.0.0.1): passes; a swap fails it."""
    repo, _ = make_repo(tmp_path, bucket_url)
    checkout = clone(repo, tmp_path)

    result = run_recipe(checkout, bucket_url)

    assert result.returncode == 0, result.stderr
    assert result.stdout.count("OK  ") == 2
    assert f"    archive {bucket_url}/agents/run-1/run.tar.gz\n" in result.stdout
    objects = s3_objects(bucket_url)
    fs = fsspec.filesystem("s3")
    root = bucket_url.removeprefix("s3://")
    fs.pipe_file(f"{root}/agents/run-1/run.tar.gz", objects["agents/run-2/run.tar.gz"])
    capsys.readouterr()
    code = cli.main(["verify", str(checkout / SUMMARIES[0]), "--store", bucket_url])
    assert code == 1
    assert (
        f"'{bucket_url}/agents/run-1/run.tar.gz': SHA-256 " in capsys.readouterr().err
    )


# --- runlog verify --store, in process --------------------------------------


@pytest.fixture
def stored(tmp_path: Path) -> tuple[Path, str]:
    """One archived run uploaded to a file:// store; (run dir, store URL)."""
    run_dir = make_run(tmp_path / "runs", "r1", 50)
    store = (tmp_path / "store").as_uri()
    runlog_main("archive", str(run_dir))
    runlog_main("upload", str(run_dir), store)
    return run_dir, store


def verify(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``runlog verify ARGV`` in process: exit code, stdout, stderr."""
    capsys.readouterr()
    code = cli.main(["verify", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_verify_store_of_a_summary_run_dir_and_run_id(
    stored: tuple[Path, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The summary file, a dir holding only it, and a run id all verify OK."""
    run_dir, store = stored
    only = tmp_path / "clone" / "runs" / "agents" / "r1"
    only.mkdir(parents=True)
    shutil.copy(run_dir / "logs_summary.txt", only)

    for target in (str(run_dir / "logs_summary.txt"), str(only)):
        code, out, _ = verify(capsys, target, "--store", store)
        assert code == 0
        assert out.splitlines()[1:] == [
            f"    archive {store}/agents/r1/run.tar.gz",
            out.splitlines()[2],
            out.splitlines()[3],
            "    the summary regenerated from it is byte-identical",
        ]
        assert re.fullmatch(r"    sha256 [0-9a-f]{64}", out.splitlines()[2])
    code, out, _ = verify(
        capsys, "r1", "--store", store, "--runs-dir", str(tmp_path / "clone" / "runs")
    )
    assert code == 0
    assert out.startswith(f"OK  {only / 'logs_summary.txt'}\n")


def test_verify_store_ignores_a_changes_since_block(
    stored: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A summary with a "Changes since" block still matches its archive."""
    run_dir, store = stored
    summary = run_dir / "logs_summary.txt"
    lines = summary.read_text().split("\n")
    at = lines.index("") + 1
    block = ["== Changes since r0 ==", "Status: FAILED -> SUCCESS", ""]
    summary.write_text("\n".join([*lines[:at], *block, *lines[at:]]))

    assert verify(capsys, str(summary), "--store", store)[0] == 0


def test_verify_store_input_errors_exit_2(
    stored: tuple[Path, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """No summary, a summary recording no hash, an unknown run id: exit 2."""
    run_dir, store = stored
    code, _, err = verify(capsys, str(tmp_path / "nothing"), "--store", store)
    assert code == 2 and "no such file" in err

    bare = tmp_path / "bare" / "agents" / "r1"
    bare.mkdir(parents=True)
    text = (run_dir / "logs_summary.txt").read_text()
    (bare / "logs_summary.txt").write_text(re.sub(r"SHA-256: +\w+", "", text))
    code, _, err = verify(capsys, str(bare), "--store", store)
    assert code == 2 and "records no archive hash" in err

    code, _, err = verify(capsys, "zz", "--store", store, "--runs-dir", str(tmp_path))
    assert code == 2 and "'zz'" in err


def test_verify_store_names_a_damaged_archive_by_its_url(
    stored: tuple[Path, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A stored sidecar gone: the error names the URL, never the temporary copy."""
    run_dir, store = stored
    (tmp_path / "store" / "agents" / "r1" / "run.tar.gz.sha256").unlink()

    code, _, err = verify(capsys, str(run_dir), "--store", store)

    assert code == 1
    assert f"sidecar '{store}/agents/r1/run.tar.gz.sha256' is missing" in err
    assert "runlog-verify-" not in err


def test_verify_of_a_url_prints_the_url(
    stored: tuple[Path, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """runlog verify URL says OK for the URL; a failure names it too (#17)."""
    _, store = stored
    code, out, _ = verify(capsys, f"{store}/agents/r1")
    assert code == 0
    assert out.startswith(f"OK  {store}/agents/r1/run.tar.gz\n")

    archive = tmp_path / "store" / "agents" / "r1" / "run.tar.gz"
    archive.write_bytes(archive.read_bytes()[:-40])
    code, out, err = verify(capsys, f"{store}/agents/r1")
    assert code == 1
    assert f"runlog: error: '{store}/agents/r1/run.tar.gz': SHA-256 expected" in err
    assert "runlog-fetch-" not in out + err


def test_verify_store_catches_each_tampering_in_process(
    stored: tuple[Path, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A line added to the summary, another archive, no archive: exit 1 each."""
    run_dir, store = stored
    summary = run_dir / "logs_summary.txt"
    text = summary.read_text()
    summary.write_text(text + "signed off by me\n")
    code, _, err = verify(capsys, str(summary), "--store", store)
    assert code == 1
    assert "(1 line(s) differ); first at line " in err
    assert "committed 'signed off by me', regenerated '(end of file)'" in err
    summary.write_text(text)

    stored_archive = tmp_path / "store" / "agents" / "r1" / "run.tar.gz"
    other = make_run(tmp_path / "other", "r1", 60)
    runlog_main("archive", str(other))
    stored_archive.write_bytes((other / "run.tar.gz").read_bytes())
    code, _, err = verify(capsys, str(summary), "--store", store)
    assert code == 1
    assert "the stored archive is not the one this summary was made from" in err

    stored_archive.unlink()
    code, _, err = verify(capsys, str(summary), "--store", store)
    assert code == 1
    assert "its archive is missing from the store: no run.tar.gz under" in err
