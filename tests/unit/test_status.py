"""run.json reading, RFC 3339 times, process liveness and the believed status."""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

from runlog._status import (
    boot_id,
    effective_status,
    format_time,
    is_pid_alive,
    parse_time,
    process_start_ticks,
    read_run_json,
    status_reason,
)

SLEEP_30 = "import time; time.sleep(30)"


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll *condition* until it holds; fail the test after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s")
        time.sleep(0.005)


def proc_state(pid: int) -> str | None:
    """The one-letter state of *pid* from /proc, or None when it has no entry."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return None
    return text.rpartition(")")[2].split()[0]


def stop(child: subprocess.Popen[bytes]) -> None:
    """Kill *child* if it still runs, and reap it."""
    if child.poll() is None:
        child.kill()
    child.wait()


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A child process sleeping for 30 s; killed and reaped after the test."""
    child = subprocess.Popen([sys.executable, "-c", SLEEP_30])
    try:
        yield child
    finally:
        stop(child)


def kill_unreaped(child: subprocess.Popen[bytes]) -> None:
    """SIGKILL *child* and wait until it is a zombie (exited, not reaped)."""
    os.kill(child.pid, signal.SIGKILL)
    wait_for(lambda: proc_state(child.pid) == "Z")


def absent_pid() -> int:
    """A pid above the kernel's pid_max: no process can have it."""
    return int(Path("/proc/sys/kernel/pid_max").read_text(encoding="ascii")) + 1


def write_run_json(logs: Path, info: dict[str, Any]) -> Path:
    """Write *info* as ``logs/run.json`` and return the logs dir."""
    logs.mkdir(parents=True, exist_ok=True)
    (logs / "run.json").write_bytes(orjson.dumps(info))
    return logs


def running_info(owner: int, /, **changes: Any) -> dict[str, Any]:
    """A run.json of a running run owned by pid *owner* on this host, changed."""
    info: dict[str, Any] = {
        "run_id": "r1",
        "framework": "fw",
        "status": "running",
        "pid": owner,
        "pid_started": process_start_ticks(owner),
        "host": socket.gethostname(),
        "boot_id": boot_id(),
        "heartbeat_at": format_time(datetime.now(UTC)),
        "heartbeat_interval_s": 1.0,
    }
    info.update(changes)
    return info


# times


def test_format_time_writes_utc_with_microseconds_and_z() -> None:
    """An aware time in another zone is written in UTC, with 6 digits and ``Z``."""
    moment = datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=timezone(timedelta(hours=2)))
    assert format_time(moment) == "2025-01-02T01:04:05.000006Z"


def test_format_time_round_trips_through_parse_time() -> None:
    """parse_time(format_time(t)) gives back t exactly, as aware UTC."""
    moment = datetime(2031, 12, 31, 23, 59, 59, 999999, UTC)
    parsed = parse_time(format_time(moment))
    assert parsed == moment
    assert parsed is not None and parsed.tzinfo is UTC


@pytest.mark.parametrize(
    "text",
    [
        b"2025-10-20T14:23:45Z",
        "2025-10-20",
        "2025-13-01T00:00:00Z",
        "2025-10-20T14:23:45Zjunk",
        "14:23:45Z",
        ["2025-10-20T14:23:45Z"],
    ],
)
def test_parse_time_rejects_what_is_not_an_aware_timestamp(text: object) -> None:
    """Bytes, a bare date, an impossible month, trailing junk: None, not an error."""
    assert parse_time(text) is None


# read_run_json


def test_read_run_json_of_a_missing_logs_dir_is_none(tmp_path: Path) -> None:
    """A logs dir that does not exist has no run.json: None."""
    assert read_run_json(tmp_path / "nope" / "logs") is None


def test_read_run_json_of_an_empty_file_is_none(tmp_path: Path) -> None:
    """An empty run.json (created, not yet written) reads as None."""
    (tmp_path / "run.json").write_bytes(b"")
    assert read_run_json(tmp_path) is None


@pytest.mark.parametrize(
    "content",
    [
        b'{"status": "running"',
        b'{"status": "running"} trailing',
        b'{"heartbeat_interval_s": NaN}',
        b'{"status": "\xff\xfe"}',
        b'{"a":' * 2000 + b"1" + b"}" * 2000,
        b"\x00\x00\x00\x00",
    ],
    ids=["torn", "trailing", "nan", "bad-utf8", "too-deep", "nul-bytes"],
)
def test_read_run_json_of_invalid_json_is_none(tmp_path: Path, content: bytes) -> None:
    """Bytes that are not one JSON document read as None."""
    (tmp_path / "run.json").write_bytes(content)
    assert read_run_json(tmp_path) is None


@pytest.mark.parametrize("content", [b"[]", b'"running"', b"1", b"null", b"true"])
def test_read_run_json_of_a_non_object_is_none(tmp_path: Path, content: bytes) -> None:
    """Valid JSON that is not an object (array, string, number, null) is None."""
    (tmp_path / "run.json").write_bytes(content)
    assert read_run_json(tmp_path) is None


def test_read_run_json_returns_the_object_as_written(tmp_path: Path) -> None:
    """A JSON object comes back whole: nested values and non-ASCII text kept."""
    info = {"status": "success", "metadata": {"k": [1, 2.5, None]}, "cwd": "/tmp/é"}
    write_run_json(tmp_path, info)
    assert read_run_json(tmp_path) == info


def test_read_run_json_reads_a_huge_object_whole(tmp_path: Path) -> None:
    """An 8 MB run.json is read in full, not cut at some buffer size."""
    blob = "x" * (8 << 20)
    write_run_json(tmp_path, {"status": "failed", "error": blob})
    info = read_run_json(tmp_path)
    assert info is not None
    assert info["status"] == "failed"
    assert len(info["error"]) == 8 << 20


def test_read_run_json_of_a_huge_invalid_file_is_none(tmp_path: Path) -> None:
    """8 MB of an unterminated object reads as None, not an error."""
    (tmp_path / "run.json").write_bytes(b'{"error": "' + b"x" * (8 << 20))
    assert read_run_json(tmp_path) is None


def test_read_run_json_when_logs_is_a_file_is_none(tmp_path: Path) -> None:
    """A regular file where the logs dir should be: None (ENOTDIR)."""
    (tmp_path / "logs").write_bytes(b"not a directory")
    assert read_run_json(tmp_path / "logs") is None


def test_read_run_json_of_a_dangling_symlink_is_none(tmp_path: Path) -> None:
    """run.json pointing at a file that does not exist reads as absent."""
    (tmp_path / "run.json").symlink_to(tmp_path / "gone.json")
    assert read_run_json(tmp_path) is None


def test_read_run_json_raises_when_run_json_cannot_be_read(tmp_path: Path) -> None:
    """A run.json that exists but cannot be opened (symlink loop) raises OSError."""
    (tmp_path / "run.json").symlink_to(tmp_path / "run.json")
    with pytest.raises(OSError, match="Too many levels of symbolic links") as caught:
        read_run_json(tmp_path)
    assert caught.value.errno == errno.ELOOP


# boot id and /proc


def test_boot_id_is_the_kernels_boot_id() -> None:
    """boot_id() is /proc/sys/kernel/random/boot_id without its newline."""
    source = Path("/proc/sys/kernel/random/boot_id")
    expected = source.read_text(encoding="ascii").strip() if source.exists() else None
    assert boot_id() == expected


def test_start_ticks_of_a_new_process_are_the_current_uptime(
    sleeper: subprocess.Popen[bytes],
) -> None:
    """A child started just now started at the current uptime, in clock ticks."""
    ticks = process_start_ticks(sleeper.pid)
    uptime = float(Path("/proc/uptime").read_text(encoding="ascii").split()[0])
    assert ticks is not None
    assert abs(ticks / os.sysconf("SC_CLK_TCK") - uptime) < 5.0


def test_start_ticks_of_a_later_process_are_not_earlier(
    sleeper: subprocess.Popen[bytes],
) -> None:
    """A child cannot have started before the process that spawned it."""
    own = process_start_ticks(os.getpid())
    child = process_start_ticks(sleeper.pid)
    assert own is not None and child is not None
    assert child >= own


def test_start_ticks_of_an_absent_pid_are_none() -> None:
    """A pid no process has (above pid_max) has no start time."""
    assert process_start_ticks(absent_pid()) is None


def test_start_ticks_survive_into_a_zombie(sleeper: subprocess.Popen[bytes]) -> None:
    """A killed, unreaped child keeps the start time it had while alive."""
    before = process_start_ticks(sleeper.pid)
    kill_unreaped(sleeper)
    assert before is not None
    assert process_start_ticks(sleeper.pid) == before


def test_process_name_with_parentheses_and_state_letters_is_parsed() -> None:
    """A process named ``x) Z 9 (y`` is alive, with its real start ticks."""
    code = (
        "import pathlib, time; "
        "pathlib.Path('/proc/self/comm').write_text('x) Z 9 (y'); "
        "print('ready', flush=True); time.sleep(30)"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n"
        comm = Path(f"/proc/{child.pid}/comm").read_text(encoding="utf-8")
        assert comm == "x) Z 9 (y\n"
        assert is_pid_alive(child.pid)
        ticks = process_start_ticks(child.pid)
        uptime = float(Path("/proc/uptime").read_text(encoding="ascii").split()[0])
        assert ticks is not None
        assert abs(ticks / os.sysconf("SC_CLK_TCK") - uptime) < 5.0
    finally:
        child.kill()
        child.wait()
        assert child.stdout is not None
        child.stdout.close()


# is_pid_alive


def test_own_process_is_alive() -> None:
    """The calling process is alive."""
    assert is_pid_alive(os.getpid())


def test_sleeping_child_is_alive(sleeper: subprocess.Popen[bytes]) -> None:
    """A running child process is alive."""
    assert is_pid_alive(sleeper.pid)


def test_killed_and_reaped_child_is_not_alive(
    sleeper: subprocess.Popen[bytes],
) -> None:
    """A child killed and reaped no longer exists."""
    sleeper.kill()
    sleeper.wait()
    assert not is_pid_alive(sleeper.pid)


def test_killed_unreaped_child_is_not_alive(sleeper: subprocess.Popen[bytes]) -> None:
    """A killed child that was not reaped yet is a zombie: not alive."""
    kill_unreaped(sleeper)
    assert not is_pid_alive(sleeper.pid)


def test_pid_above_pid_max_is_not_alive() -> None:
    """A pid above the kernel's pid_max is never alive."""
    assert not is_pid_alive(absent_pid())


def test_pid_beyond_the_c_int_range_is_not_alive() -> None:
    """A pid too large for the OS (2**31) is not alive, not an OverflowError."""
    assert not is_pid_alive(2**31)


def test_process_of_another_user_is_alive() -> None:
    """A process we may not signal (EPERM) still exists, so it is alive."""
    code = (
        "import os\n"
        "from runlog._status import is_pid_alive\n"
        "if os.geteuid() == 0:\n"
        "    os.setgid(65534)\n"
        "    os.setuid(65534)\n"
        "try:\n"
        "    os.kill(1, 0)\n"
        "    denied = False\n"
        "except PermissionError:\n"
        "    denied = True\n"
        "print(denied, is_pid_alive(1))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
        timeout=30,
    )
    assert done.stdout == "True True\n"


# status_reason / effective_status on run.json files


def test_live_owner_with_fresh_heartbeat_is_running(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    """run.json of a live child with its start ticks and a fresh beat: running."""
    logs = write_run_json(tmp_path / "logs", running_info(sleeper.pid))
    info = read_run_json(logs)
    assert info is not None
    assert status_reason(info) == ("running", None)
    assert effective_status(info) == "running"


def test_owner_killed_and_reaped_is_crashed(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    """The same run.json after its process was killed: crashed, naming the pid."""
    logs = write_run_json(tmp_path / "logs", running_info(sleeper.pid))
    sleeper.kill()
    sleeper.wait()
    info = read_run_json(logs)
    assert info is not None
    assert status_reason(info) == ("crashed", f"process {sleeper.pid} is gone")


def test_owner_killed_but_unreaped_is_crashed(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    """An owner that is a zombie is gone too: crashed, though its pid exists."""
    logs = write_run_json(tmp_path / "logs", running_info(sleeper.pid))
    kill_unreaped(sleeper)
    info = read_run_json(logs)
    assert info is not None
    assert effective_status(info) == "crashed"


def test_owner_pid_beyond_the_c_int_range_is_crashed(tmp_path: Path) -> None:
    """A corrupt run.json whose pid is 2**31 reads as crashed, not an exception."""
    info = running_info(os.getpid(), pid=2**31, pid_started=None)
    logs = write_run_json(tmp_path / "logs", info)
    loaded = read_run_json(logs)
    assert loaded is not None
    assert status_reason(loaded) == ("crashed", f"process {2**31} is gone")


def test_heartbeat_exactly_three_intervals_old_is_still_running() -> None:
    """The limit is strict: a beat exactly 3 intervals old is not yet crashed."""
    beat = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    info = {
        "status": "running",
        "host": "elsewhere",
        "heartbeat_at": format_time(beat),
        "heartbeat_interval_s": 2,
    }
    assert status_reason(info, now=beat + timedelta(seconds=6)) == ("running", None)


def test_stale_heartbeat_is_crashed_with_its_age_and_interval() -> None:
    """A beat 3 intervals and a bit old: crashed, saying how old and the interval."""
    beat = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    info = {
        "status": "running",
        "host": "elsewhere",
        "heartbeat_at": format_time(beat),
        "heartbeat_interval_s": 2,
    }
    now = beat + timedelta(seconds=6, microseconds=100_000)
    assert status_reason(info, now=now) == (
        "crashed",
        "no heartbeat for 6.1s (interval 2s)",
    )


def test_stale_heartbeat_of_a_live_owner_is_crashed(
    sleeper: subprocess.Popen[bytes],
) -> None:
    """A live process whose heartbeat stopped (hung) is still crashed."""
    beat = datetime.now(UTC) - timedelta(seconds=60)
    info = running_info(sleeper.pid, heartbeat_at=format_time(beat))
    assert effective_status(info) == "crashed"


def test_heartbeat_in_the_future_is_running() -> None:
    """A beat ahead of the reader's clock (skew) is fresh, not crashed."""
    beat = datetime.now(UTC) + timedelta(hours=1)
    info = {
        "status": "running",
        "host": "elsewhere",
        "heartbeat_at": format_time(beat),
        "heartbeat_interval_s": 1,
    }
    assert effective_status(info) == "running"


def test_other_boot_on_this_host_is_crashed() -> None:
    """A boot id other than this machine's, on this host: the machine restarted."""
    if boot_id() is None:
        pytest.skip("this system has no /proc/sys/kernel/random/boot_id")
    info = running_info(os.getpid(), boot_id="00000000-0000-0000-0000-000000000000")
    assert status_reason(info) == (
        "crashed",
        "the machine restarted after the run started",
    )


def test_other_boot_on_another_host_is_running() -> None:
    """A boot id only means something on its own host; elsewhere it is ignored."""
    info = running_info(
        os.getpid(),
        host="elsewhere",
        boot_id="00000000-0000-0000-0000-000000000000",
    )
    assert status_reason(info) == ("running", None)


@pytest.mark.parametrize("recorded", [None, ""])
def test_missing_boot_id_is_not_compared(recorded: str | None) -> None:
    """A run.json without a boot id (older writer) is judged on its pid alone."""
    assert status_reason(running_info(os.getpid(), boot_id=recorded)) == (
        "running",
        None,
    )


def test_start_ticks_other_than_recorded_is_a_reused_pid(
    sleeper: subprocess.Popen[bytes],
) -> None:
    """The pid is alive but started at another time: another process, crashed."""
    ticks = process_start_ticks(sleeper.pid)
    assert ticks is not None
    info = running_info(sleeper.pid, pid_started=ticks - 1)
    assert status_reason(info) == (
        "crashed",
        f"process {sleeper.pid} is gone (its pid was reused)",
    )


@pytest.mark.parametrize("status", ["success", "failed", "interrupted"])
def test_finished_status_ignores_every_crash_sign(tmp_path: Path, status: str) -> None:
    """Dead pid, other boot, stale beat: a finished run keeps its status and reason."""
    info = running_info(
        absent_pid(),
        status=status,
        reason="done",
        pid_started=None,
        boot_id="00000000-0000-0000-0000-000000000000",
        heartbeat_at="2000-01-01T00:00:00.000000Z",
    )
    loaded = read_run_json(write_run_json(tmp_path / "logs", info))
    assert loaded is not None
    assert status_reason(loaded) == (status, "done")


@pytest.mark.parametrize("reason", [None, 5, ["x"], {"why": "x"}])
def test_finished_reason_that_is_not_text_is_none(reason: object) -> None:
    """A finished run's reason is passed on only when it is a string."""
    assert status_reason({"status": "failed", "reason": reason}) == ("failed", None)


@pytest.mark.parametrize("status", [None, ""])
def test_missing_status_is_judged_as_running(status: str | None) -> None:
    """No status (null or empty) means running: a stale beat makes it crashed."""
    info = {
        "status": status,
        "heartbeat_at": "2000-01-01T00:00:00.000000Z",
        "heartbeat_interval_s": 1,
    }
    assert effective_status(info) == "crashed"


@pytest.mark.parametrize(
    "interval", [None, True, 0, -5, "1", float("nan"), float("inf"), [1]]
)
def test_unusable_heartbeat_interval_disables_the_heartbeat_check(
    interval: object,
) -> None:
    """An interval that is not a finite number > 0 cannot make a run crashed."""
    info = {
        "status": "running",
        "host": "elsewhere",
        "heartbeat_at": "2000-01-01T00:00:00.000000Z",
        "heartbeat_interval_s": interval,
    }
    assert status_reason(info) == ("running", None)


@pytest.mark.parametrize(
    "beat", [None, "", "long ago", "2000-01-01T00:00:00", 946684800, {"t": 0}]
)
def test_unusable_heartbeat_time_disables_the_heartbeat_check(beat: object) -> None:
    """A heartbeat that is not an aware RFC 3339 time cannot make a run crashed."""
    info = {
        "status": "running",
        "host": "elsewhere",
        "heartbeat_at": beat,
        "heartbeat_interval_s": 1,
    }
    assert status_reason(info) == ("running", None)


@pytest.mark.parametrize("pid", ["123", 12.0, True, None, [1]])
def test_pid_that_is_not_an_int_is_not_checked(pid: object) -> None:
    """A pid field that is not an int is ignored, even on this host."""
    info = running_info(os.getpid(), pid=pid)
    assert status_reason(info) == ("running", None)


@pytest.mark.parametrize("started", ["123", 1.0, True, None])
def test_start_ticks_that_are_not_an_int_are_not_compared(started: object) -> None:
    """A pid_started that is not an int skips the pid-reuse check."""
    info = running_info(os.getpid(), pid_started=started)
    assert status_reason(info) == ("running", None)
