"""Benchmark runlog's archiver against tar + sha256sum on a generated ~300 MB run.

Usage: python bench/archive.py [RUN_DIR] [--size-mb 300] [--repeat 5] [--levels 1,3,6,9]

Without RUN_DIR, a run is generated with bench/gen_run.py in a temp directory.
Each measurement runs in its own process, interleaved with the others, so a
noisy machine slows all of them alike; medians are reported with the peak RSS
of that process (and of its children, for the shell pipelines). runlog's time
is one ``Archiver.create_archive`` call: hashing every file, writing the
archive, reading it back to verify it, and writing the sidecar.
The shell baselines compress and hash; they verify nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import gen_run  # bench/ is on sys.path when a bench script runs

HERE = Path(__file__).resolve().parent
TARGETS = {"gz": 1.2, "zst": 3.5}  # speed vs `tar czf` + `sha256sum`
RSS_LIMIT_MB = 100

RUNLOG_CHILD = """
import sys, time
from runlog.archive import Archiver
run_dir, fmt, level = sys.argv[1], sys.argv[2], int(sys.argv[3])
start = time.perf_counter()
info = Archiver(run_dir).create_archive(format=fmt, level=level or None)
print(time.perf_counter() - start, info.size_bytes)
"""


@dataclass
class Series:
    """Timings, peak RSS and output size of one method."""

    label: str
    seconds: list[float] = field(default_factory=list)
    process_seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    rss_kb: list[int] = field(default_factory=list)
    size: int = 0

    @property
    def median(self) -> float:
        """Median wall time in seconds."""
        return statistics.median(self.seconds)


def _run(argv: list[str]) -> tuple[float, float, int, str]:
    """Run *argv*; return (wall seconds, CPU seconds, peak RSS in KB, stdout)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{argv!r} failed with exit code {proc.returncode}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, out


def runlog_method(run_dir: Path, fmt: str, level: int = 0) -> Callable[[], Series]:
    """A measurement of runlog's archiver (format, level; 0 = default)."""
    archive = run_dir / f"run.tar.{fmt}"
    label = f"runlog {fmt}" + (f" level {level}" if level else "")
    series = Series(label)

    def measure() -> Series:
        for path in (archive, Path(f"{archive}.sha256")):
            path.unlink(missing_ok=True)
        wall, cpu, rss, out = _run(
            [sys.executable, "-c", RUNLOG_CHILD, str(run_dir), fmt, str(level)]
        )
        seconds, size = out.split()
        series.seconds.append(float(seconds))
        series.process_seconds.append(wall)
        series.cpu_seconds.append(cpu)
        series.rss_kb.append(rss)
        series.size = int(size)
        return series

    return measure


def shell_method(label: str, script: str, output: Path) -> Callable[[], Series]:
    """A measurement of a shell pipeline writing *output*."""
    series = Series(label)

    def measure() -> Series:
        output.unlink(missing_ok=True)
        wall, cpu, rss, _ = _run(["bash", "-c", script])
        series.seconds.append(wall)
        series.process_seconds.append(wall)
        series.cpu_seconds.append(cpu)
        series.rss_kb.append(rss)
        series.size = output.stat().st_size
        return series

    return measure


def ensure_zstd() -> bool:
    """True if the zstd command exists, installing the Debian package if it can."""
    if shutil.which("zstd"):
        return True
    if shutil.which("apt-get") and os.geteuid() == 0:
        print("zstd is missing: installing it with apt-get", flush=True)
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        subprocess.run(["apt-get", "install", "-y", "-qq", "zstd"], check=False)
    if shutil.which("zstd"):
        return True
    print("zstd is MISSING (apt-get install zstd): skipping the tar -I zstd rows")
    return False


def generate(size_mb: int, where: Path) -> Path:
    """Make a run with bench/gen_run.py; return its directory."""
    return gen_run.generate(where, size_mb, steps=50, seed=1)


def main() -> None:
    """Run the benchmark and print a markdown report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?", type=Path)
    parser.add_argument("--size-mb", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--levels", default="1,3,6,9", help="gzip levels to compare ('' to skip)"
    )
    parser.add_argument(
        "--zst-levels", default="1,3,9", help="zstd levels to compare ('' to skip)"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="runlog-bench-") as tmp:
        run_dir = args.run_dir or generate(args.size_mb, Path(tmp) / "runs")
        run_dir = run_dir.resolve()
        scratch = Path(tmp)
        logs_bytes = sum(
            p.stat().st_size for p in (run_dir / "logs").rglob("*") if p.is_file()
        )
        files = sum(1 for p in (run_dir / "logs").rglob("*") if p.is_file())
        print(f"run: {run_dir} ({logs_bytes / 1e6:.0f} MB in {files} files)")
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
        has_zstd = ensure_zstd()

        tgz, tzst, tzst_mt = scratch / "a.tgz", scratch / "a.tzst", scratch / "b.tzst"
        cd = f"cd {str(run_dir)!r}"
        main_methods = {
            "gz": runlog_method(run_dir, "gz"),
            "tar czf": shell_method(
                "tar czf + sha256sum",
                f"{cd} && tar czf {tgz} logs && sha256sum {tgz} >/dev/null",
                tgz,
            ),
            "zst": runlog_method(run_dir, "zst"),
        }
        if has_zstd:
            main_methods["tar zstd"] = shell_method(
                "tar -I zstd + sha256sum",
                f"{cd} && tar -I zstd -cf {tzst} logs && sha256sum {tzst} >/dev/null",
                tzst,
            )
            main_methods["tar zstd -T0"] = shell_method(
                "tar -I 'zstd -T0' + sha256sum",
                f"{cd} && tar -I 'zstd -T0' -cf {tzst_mt} logs "
                f"&& sha256sum {tzst_mt} >/dev/null",
                tzst_mt,
            )
        subprocess.run(
            ["cat", *map(str, (run_dir / "logs").rglob("*.log"))],
            stdout=subprocess.DEVNULL,
            check=True,
        )  # warm the page cache
        results: dict[str, Series] = {}
        for _ in range(args.repeat):
            for key, measure in main_methods.items():
                results[key] = measure()
        level_methods = [
            runlog_method(run_dir, fmt, int(level))
            for fmt, levels in (("gz", args.levels), ("zst", args.zst_levels))
            for level in levels.split(",")
            if level.strip()
        ]
        level_results: list[Series] = []
        for _ in range(max(1, args.repeat // 2 + 1) if level_methods else 0):
            level_results = [measure() for measure in level_methods]
        for fmt in ("gz", "zst"):
            for path in (run_dir / f"run.tar.{fmt}", run_dir / f"run.tar.{fmt}.sha256"):
                path.unlink(missing_ok=True)

    report(results, level_results, logs_bytes)


def report(
    results: dict[str, Series], level_results: list[Series], logs_bytes: int
) -> None:
    """Print the markdown tables and the verdict on each target."""
    base = results["tar czf"].median
    mb = logs_bytes / 1e6
    print()
    print(
        "| method | median s | process s | CPU s | MB/s | speed vs tar czf "
        "+ sha256sum | peak RSS MB | archive MB | ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for series in results.values():
        print(
            f"| {series.label} | {series.median:.2f} "
            f"| {statistics.median(series.process_seconds):.2f} "
            f"| {statistics.median(series.cpu_seconds):.2f} "
            f"| {mb / series.median:.0f} | {base / series.median:.2f}x "
            f"| {max(series.rss_kb) / 1024:.0f} | {series.size / 1e6:.1f} "
            f"| {logs_bytes / series.size:.1f} |"
        )
    if level_results:
        print()
        print(
            "| runlog level | median s | CPU s | speed vs tar czf + sha256sum "
            "| archive MB | ratio |"
        )
        print("|---|---|---|---|---|---|")
        for series in level_results:
            print(
                f"| {series.label.removeprefix('runlog ')} | {series.median:.2f} "
                f"| {statistics.median(series.cpu_seconds):.2f} "
                f"| {base / series.median:.2f}x | {series.size / 1e6:.1f} "
                f"| {logs_bytes / series.size:.1f} |"
            )
    print()
    for fmt, target in TARGETS.items():
        ratio = base / results[fmt].median
        verdict = "met" if ratio >= target else "MISSED"
        print(
            f"target {fmt}: >= {target}x tar czf + sha256sum: {ratio:.2f}x, {verdict}"
        )
    if "tar zstd" in results:
        ratio = results["tar zstd"].median / results["zst"].median
        print(f"runlog zst vs tar -I zstd + sha256sum: {ratio:.2f}x")
    for fmt in ("gz", "zst"):
        peak = max(results[fmt].rss_kb) / 1024
        verdict = "met" if peak < RSS_LIMIT_MB else "MISSED"
        print(
            f"target peak RSS, runlog {fmt} < {RSS_LIMIT_MB} MB: "
            f"{peak:.0f} MB, {verdict}"
        )


if __name__ == "__main__":
    main()
