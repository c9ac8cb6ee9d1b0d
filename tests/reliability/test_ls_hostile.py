"""ls on hostile runs (#12): fields escaped, a bad run is one row, no look-alikes."""

from __future__ import annotations

import gzip
import io
import json
import os
import random
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import zstandard

pytestmark = pytest.mark.reliability

REPO = Path(__file__).resolve().parents[2]
# a title change, a CSI in 7-bit and C1 forms, a bidi override, a line
# separator, DEL, NEL and BEL: each acts on a terminal when printed raw
HOSTILE = "t\x1b]0;pwned\x07 \x1b[2J \x9b31m ab\u202ecd \u2028 \x7f \x85"
RAW = ("\x1b", "\x07", "\x9b", "\u202e", "\u2028", "\x7f", "\x85")
GOOD_INFO = {
    "run_id": "good",
    "framework": "fw",
    "status": "success",
    "started_at": "2025-10-21T10:00:00.000000Z",
    "duration_s": 12.0,
}


def ls(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m runlog ls ARGS`` as a real process, colors off."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNLOG_")}
    env["NO_COLOR"] = "1"
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "runlog", "ls", *map(str, args)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="surrogateescape",
        timeout=30,
        cwd=cwd,
        env=env,
        check=False,
    )


def assert_no_raw(text: str) -> None:
    """No character that acts on a terminal is in *text*."""
    found = sorted({repr(char) for char in RAW if char in text})
    assert found == [], f"raw control characters reached the output: {found}"


def table_rows(out: str) -> dict[str, list[str]]:
    """The ls table's rows by run id (second column), header and footer left out."""
    lines = out.split("\n\n")[0].splitlines()[1:]
    return {line.split()[1]: line.split() for line in lines}


def write_run_json(run: Path, info: dict[str, Any]) -> None:
    """*info* as run's logs/run.json, with one step directory beside it."""
    (run / "logs" / "step_001").mkdir(parents=True)
    (run / "logs" / "run.json").write_bytes(orjson.dumps(info))


def tar_bytes(members: dict[str, bytes]) -> bytes:
    """An uncompressed tar of *members*, MANIFEST.sha256 first, as runlog writes it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in {"MANIFEST.sha256": b"", **members}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1_760_000_000
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def write_archive(path: Path, members: dict[str, bytes]) -> Path:
    """An archive-only run: *members* in a run.tar.gz or run.tar.zst at *path*."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = tar_bytes(members)
    if path.name.endswith(".zst"):
        path.write_bytes(zstandard.ZstdCompressor().compress(raw))
    else:
        path.write_bytes(gzip.compress(raw, mtime=0))
    return path


def archive_members(info: dict[str, Any]) -> dict[str, bytes]:
    """A run's archive members: a 200 KB combined.log before its run.json."""
    noise = random.Random(12)
    combined = "".join(f"{noise.getrandbits(64):016x}\n" for _ in range(12_000))
    return {
        "logs/combined.log": combined.encode(),
        "logs/run.json": orjson.dumps(info),
        "logs/run.log": b"",
    }


# --- escapes -----------------------------------------------------------------------


def test_ls_escapes_hostile_fields_of_a_run_json_in_logs(tmp_path: Path) -> None:
    """Framework, run id and status from logs/run.json are printed escaped."""
    info = {**GOOD_INFO, "framework": HOSTILE, "run_id": HOSTILE, "status": HOSTILE}
    write_run_json(tmp_path / "runs" / "fw" / "r1", info)
    done = ls(tmp_path / "runs", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert_no_raw(done.stdout + done.stderr)
    (line,) = done.stdout.splitlines()[1:2]
    shown = "t\\x1b]0;pwned\\x07 \\x1b[2J \\x9b31m ab\\u202ecd \\u2028 \\x7f \\x85"
    # framework and run id whole; the status cut to its column's 32
    assert line.startswith(f"{shown}  {shown}  {shown[:29]}...  2025-10-21")
    listed = ls(tmp_path / "runs", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert_no_raw(listed.stdout)
    (row,) = json.loads(listed.stdout)
    assert (row["framework"], row["run_id"], row["status"]) == (HOSTILE,) * 3


def test_ls_escapes_hostile_fields_of_a_run_json_in_an_archive(tmp_path: Path) -> None:
    """An archive-only run's run.json fields are printed escaped; JSON reads them."""
    info = {**GOOD_INFO, "framework": HOSTILE, "run_id": HOSTILE, "status": HOSTILE}
    write_archive(tmp_path / "runs" / "fw" / "r1" / "run.tar.gz", archive_members(info))
    done = ls(tmp_path / "runs", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert_no_raw(done.stdout + done.stderr)
    shown = "t\\x1b]0;pwned\\x07 \\x1b[2J \\x9b31m ab\\u202ecd \\u2028 \\x7f \\x85"
    (line,) = done.stdout.splitlines()[1:2]
    assert line.startswith(f"{shown}  {shown}  {shown[:29]}...  2025-10-21")
    listed = ls(tmp_path / "runs", "--json", cwd=tmp_path)
    assert_no_raw(listed.stdout)
    (row,) = json.loads(listed.stdout)
    assert (row["framework"], row["run_id"], row["archived"]) == (
        HOSTILE,
        HOSTILE,
        True,
    )


def test_ls_escapes_hostile_directory_names(tmp_path: Path) -> None:
    """Run directories named with escapes or invalid UTF-8 are listed escaped."""
    runs = tmp_path / "runs"
    # b"\xff" is not UTF-8; b"\xc2\x9b" is U+009B, the one-byte CSI
    names = {b"fw\x1b[2J": b"r\xff\xc2\x9b", b"fw": "r\u202e\u2028".encode()}
    for framework, run_id in names.items():
        os.makedirs(os.fsencode(runs) + b"/" + framework + b"/" + run_id + b"/logs")
        run_log = (
            os.fsencode(runs) + b"/" + framework + b"/" + run_id + b"/logs/run.log"
        )
        Path(os.fsdecode(run_log)).write_bytes(b"")
    done = ls(runs, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert_no_raw(done.stdout + done.stderr)
    rows = table_rows(done.stdout)
    assert sorted(rows) == ["r\\u202e\\u2028", "r\\udcff\\x9b"]
    assert rows["r\\udcff\\x9b"][0] == "fw\\x1b[2J"
    listed = ls(runs, "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert_no_raw(listed.stdout)
    assert sorted(row["run_id"] for row in json.loads(listed.stdout)) == [
        "r\\udcff\x9b",
        "r\u202e\u2028",
    ]


def test_a_tampered_long_value_is_cut_not_spread_over_the_table(
    tmp_path: Path,
) -> None:
    """A 512 KB framework in run.json is cut to 128 columns; --json keeps it whole."""
    write_run_json(
        tmp_path / "runs" / "fw" / "r1", {**GOOD_INFO, "framework": "w" * 2**19}
    )
    write_run_json(tmp_path / "runs" / "fw" / "r2", {**GOOD_INFO, "run_id": "r2"})
    done = ls(tmp_path / "runs", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert max(len(line) for line in done.stdout.splitlines()) < 300
    assert f"{'w' * 125}... " in done.stdout
    listed = ls(tmp_path / "runs", "--json", cwd=tmp_path)
    lengths = sorted(len(row["framework"]) for row in json.loads(listed.stdout))
    assert lengths == [2, 2**19]


# --- one bad run, one row ----------------------------------------------------------


def _cut_short(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garbage(path: Path) -> None:
    path.write_bytes(random.Random(7).randbytes(4096))


def _gzip_of_garbage(path: Path) -> None:
    path.write_bytes(gzip.compress(random.Random(7).randbytes(4096), mtime=0))


CORRUPTIONS: dict[str, tuple[str, Callable[[Path], None]]] = {
    "gz cut short": ("run.tar.gz", _cut_short),
    "zst cut short": ("run.tar.zst", _cut_short),
    "gz garbage": ("run.tar.gz", _garbage),
    "zst garbage": ("run.tar.zst", _garbage),
    "gzip of garbage": ("run.tar.gz", _gzip_of_garbage),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_a_corrupt_archive_is_one_unreadable_row_among_good_runs(
    case: str, tmp_path: Path
) -> None:
    """A damaged archive-only run is UNREADABLE with its reason; the others list."""
    runs = tmp_path / "runs"
    write_run_json(runs / "fw" / "good", GOOD_INFO)
    old = {**GOOD_INFO, "run_id": "old", "started_at": "2025-10-20T10:00:00.000000Z"}
    write_archive(runs / "fw" / "old" / "run.tar.gz", archive_members(old))
    name, corrupt = CORRUPTIONS[case]
    bad = write_archive(runs / "fw" / "bad" / name, archive_members(GOOD_INFO))
    corrupt(bad)
    done = ls(runs, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    rows = table_rows(done.stdout)
    assert [(r[1], r[2]) for r in rows.values()] == [
        ("good", "success"),
        ("old", "success"),
        ("bad", "UNREADABLE"),
    ]
    assert done.stdout.splitlines()[0].split()[-1] == "REASON"
    assert f"archive '{runs}/fw/bad/{name}' cannot be read: " in done.stdout
    assert "3 runs: 1 unreadable\n" in done.stdout
    assert "newest problem" not in done.stdout  # show could not read it either
    listed = ls(runs, "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    by_id = {row["run_id"]: row for row in json.loads(listed.stdout)}
    assert (by_id["bad"]["status"], by_id["bad"]["archived"]) == ("unreadable", True)
    assert by_id["bad"]["reason"].startswith(f"archive '{runs}/fw/bad/{name}'")
    assert (by_id["good"]["reason"], by_id["old"]["status"]) == (None, "success")


def test_ls_exits_0_when_every_run_is_unreadable(tmp_path: Path) -> None:
    """Listing worked, so ls exits 0 and shows each unreadable run with its reason."""
    runs = tmp_path / "runs"
    for run_id in ("a", "b"):
        (runs / "fw" / run_id).mkdir(parents=True)
        _garbage(runs / "fw" / run_id / "run.tar.gz")
    done = ls(runs, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert [r[2] for r in table_rows(done.stdout).values()] == ["UNREADABLE"] * 2
    assert done.stdout.endswith("\n2 runs: 2 unreadable\n")


def test_a_run_json_ls_must_not_read_is_unreadable_not_a_hang(
    tmp_path: Path,
) -> None:
    """A FIFO, a symlink loop or a 2 MB file as run.json: UNREADABLE, ls returns."""
    runs = tmp_path / "runs"
    write_run_json(runs / "fw" / "good", GOOD_INFO)
    (runs / "fw" / "fifo" / "logs").mkdir(parents=True)
    os.mkfifo(runs / "fw" / "fifo" / "logs" / "run.json")
    (runs / "fw" / "loop" / "logs").mkdir(parents=True)
    os.symlink("run.json", runs / "fw" / "loop" / "logs" / "run.json")
    write_run_json(runs / "fw" / "big", {**GOOD_INFO, "pad": "x" * 2**21})
    done = ls(runs, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = table_rows(done.stdout)
    assert {r[1]: r[2] for r in rows.values()} == {
        "good": "success",
        "fifo": "UNREADABLE",
        "loop": "UNREADABLE",
        "big": "UNREADABLE",
    }
    fifo_json = f"'{runs}/fw/fifo/logs/run.json'"
    assert f"run.json {fifo_json} is not a regular file" in done.stdout
    loop_json = f"'{runs}/fw/loop/logs/run.json'"
    assert f"Too many levels of symbolic links: {loop_json}" in done.stdout
    big_json = f"'{runs}/fw/big/logs/run.json'"
    assert f"run.json {big_json} is 2097" in done.stdout


# --- look-alikes -------------------------------------------------------------------


def git(*args: str, cwd: Path) -> None:
    """Run git in *cwd* with a throwaway identity and no user or system config."""
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        env=env,
        check=True,
        capture_output=True,
        timeout=30,
    )


def test_a_git_checkout_next_to_runs_is_not_listed(tmp_path: Path) -> None:
    """ls of a checkout's parent lists the runs, never .git (which has logs/)."""
    git("init", "-q", cwd=tmp_path)
    git("commit", "-q", "--allow-empty", "-m", "first", cwd=tmp_path)
    project = tmp_path / "project"
    project.mkdir()
    git("init", "-q", cwd=project)
    git("commit", "-q", "--allow-empty", "-m", "first", cwd=project)
    assert (tmp_path / ".git" / "logs" / "HEAD").is_file()
    assert (project / ".git" / "logs" / "HEAD").is_file()
    write_run_json(tmp_path / "fw" / "good", GOOD_INFO)
    done = ls(tmp_path, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert ".git" not in done.stdout
    assert [(r[0], r[1]) for r in table_rows(done.stdout).values()] == [("fw", "good")]
    assert done.stdout.endswith("\n1 run\n")
    nothing = ls(project, cwd=tmp_path)
    assert (nothing.returncode, nothing.stdout) == (0, "")
    assert "no runs under" in nothing.stderr


def test_only_a_logs_dir_that_looks_like_a_run_is_listed(tmp_path: Path) -> None:
    """run.json, run.log or step_NNN/ under logs/ make a run; other logs/ do not."""
    root = tmp_path / "runs"
    for rel in ("fw/a/logs/run.log", "fw/b/logs/app.log", "web/logs/HEAD"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"")
    (root / "fw" / "c" / "logs" / "step_002").mkdir(parents=True)
    (root / "fw" / "d" / "logs" / "refs").mkdir(parents=True)
    (root / "fw" / "e" / "logs").mkdir(parents=True)
    listed = ls(root, "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert sorted(row["run_id"] for row in json.loads(listed.stdout)) == ["a", "c"]
