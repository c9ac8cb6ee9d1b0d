"""`runlog report`: one self-contained HTML file, its embedded data, cap and size."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runlog.cli import main
from runlog.errors import ConfigurationError
from runlog.web import write_report

from .runs import make_demo, make_run, record, write_records

ROOT = Path(__file__).resolve().parents[3]
DATA_BLOCK = re.compile(
    r'<script type="application/json" id="runlog-data">(.*?)</script>', re.S
)
SVG_NAMESPACE = "http://www.w3.org/2000/svg"  # a name for createElementNS, not fetched


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo run, made once for the module."""
    return make_demo(tmp_path_factory.mktemp("demo") / "runs")


def embedded(page: str) -> dict[str, Any]:
    """The JSON the report embeds, parsed back."""
    match = DATA_BLOCK.search(page)
    assert match is not None
    data: dict[str, Any] = json.loads(match.group(1))
    return data


def test_report_of_the_demo_is_one_file_that_fetches_nothing(demo: Path) -> None:
    """The report is RUN/report.html; outside its data it names no URL, no src/href."""
    path = write_report(demo)

    page = path.read_text("utf-8")
    outside_data = DATA_BLOCK.sub("", page)
    assert path == demo / "report.html"
    assert set(re.findall(r"https?://[^\s\"'<>]+", outside_data)) == {SVG_NAMESPACE}
    assert not re.search(r"<(script|link|img|iframe)[^>]*\s(src|href)=", page)
    assert "@import" not in page and "url(" not in outside_data
    assert page.count("<script") == 2  # the data block and the viewer
    data = embedded(page)
    assert data["overview"]["run"]["run_id"] == demo.name
    assert len(data["overview"]["steps"]) == 5
    assert data["omitted"] == 0
    assert len(data["records"]["rows"]) == data["overview"]["records_total"]


def test_the_csp_allows_exactly_the_inline_script_and_style(demo: Path) -> None:
    """The report's CSP lists the hashes of its one script and one style, no network."""
    page = write_report(demo, demo.parent / "csp.html").read_text("utf-8")

    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    script = re.search(r"<script>(.*?)</script>", page, re.S)
    style = re.search(r"<style>(.*?)</style>", page, re.S)
    assert policy and script and style

    def sha(text: str) -> str:
        digest = hashlib.sha256(text.encode()).digest()
        return f"'sha256-{base64.b64encode(digest).decode()}'"

    rules = dict(part.strip().split(" ", 1) for part in policy.group(1).split(";"))
    assert rules["default-src"] == "'none'"
    assert rules["script-src"] == sha(script.group(1))
    assert rules["style-src"] == sha(style.group(1))
    assert "unsafe-inline" not in policy.group(1)


def test_a_record_cannot_break_out_of_the_data_block(tmp_path: Path) -> None:
    """`</script>`, `<!--` and U+2028 in a record stay inside the JSON, escaped."""
    run_dir = make_run(tmp_path / "runs")
    payload = "</script><script>window.pwned=1</script><!-- \u2028 & >"
    write_records(
        run_dir / "logs",
        [record(70, payload, level="error", step=2, **{"<b>key": payload})],
    )

    page = write_report(run_dir).read_text("utf-8")

    assert page.count("</script>") == 2
    assert "window.pwned" not in DATA_BLOCK.sub("", page)
    block = DATA_BLOCK.search(page)
    assert block is not None
    assert not set("<>&\u2028\u2029") & set(block.group(1))
    data = embedded(page)
    strings = data["records"]["strings"]
    (row,) = [
        r for r in data["records"]["rows"] if r[4] >= 0 and strings[r[4]] == payload
    ]
    assert row[8]["<b>key"] == payload


def test_past_the_cap_only_problems_and_lifecycle_records_are_kept(
    tmp_path: Path,
) -> None:
    """With max_records=5 the others stop at 5; warnings, errors, lifecycle stay."""
    run_dir = make_run(tmp_path / "runs", others=40)

    data = embedded(write_report(run_dir, max_records=5).read_text("utf-8"))

    strings = data["records"]["strings"]
    events = [strings[row[4]] for row in data["records"]["rows"]]
    assert events.count("api_call") + events.count("llm_request") == 5
    for kept in ("slow response", "request failed", "run_start", "run_end"):
        assert kept in events
    assert events.count("step_start") == events.count("step_end") == 3
    assert data["omitted"] == 36
    assert data["max_records"] == 5
    assert data["overview"]["records_total"] == 51


def test_the_viewer_says_what_the_report_left_out(demo: Path) -> None:
    """The script shows the cap note ("N records not included") in its own element."""
    page = write_report(demo, demo.parent / "note.html", max_records=0).read_text()

    assert "records not included — use runlog show/serve" in page
    assert 'data-testid": "records-cap-note"' in page
    assert embedded(page)["omitted"] > 0


def test_a_long_value_is_cut_in_the_report(tmp_path: Path) -> None:
    """A 1 MB string value keeps its first 4000 characters and says how much is cut."""
    run_dir = make_run(tmp_path / "runs")
    write_records(run_dir / "logs", [record(70, "dump", step=2, blob="x" * 1_000_000)])

    path = write_report(run_dir)

    rows = embedded(path.read_text())["records"]["rows"]
    (blob,) = [row[8]["blob"] for row in rows if "blob" in row[8]]
    assert blob.startswith("x" * 4000)
    assert blob.endswith("(996000 more characters: see runlog show)")
    assert path.stat().st_size < 200_000


def test_report_size_stays_bounded_for_a_big_run(tmp_path: Path) -> None:
    """A 20 MB bench run with a 5,000 record cap gives a report under 1.5 MB."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import gen_run
    finally:
        sys.path.remove(str(ROOT / "bench"))
    run_dir = gen_run.generate(tmp_path / "runs", 20, 5, 1)

    path = write_report(run_dir, max_records=5000)

    data = embedded(path.read_text())
    assert data["omitted"] > 50_000
    assert path.stat().st_size < 1_500_000


def test_a_bad_max_records_is_refused() -> None:
    """max_records must be an int >= 0: the error names the value."""
    with pytest.raises(ConfigurationError, match="-1"):
        write_report(".", max_records=-1)


def test_cli_report_prints_the_path_of_an_archive_report(
    demo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`runlog report ARCHIVE` writes <run_id>.report.html beside it and prints it."""
    assert main(["report", str(demo / "run.tar.gz"), "--max-records", "3"]) == 0

    out = capsys.readouterr().out.strip()
    assert out == str(demo / f"{demo.name}.report.html")
    assert embedded(Path(out).read_text())["max_records"] == 3


def test_cli_report_to_a_chosen_file_and_a_missing_run(
    demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """-o picks the file; a run that is not there exits 2 with one error line."""
    target = tmp_path / "out.html"

    assert main(["report", str(demo), "-o", str(target)]) == 0
    assert main(["report", str(tmp_path / "nothing")]) == 2

    out, err = capsys.readouterr()
    assert out.strip() == str(target)
    assert target.read_text().startswith("<!DOCTYPE html>")
    assert err.startswith("runlog: error: run ")


def test_report_needs_no_web_extra(demo: Path, tmp_path: Path) -> None:
    """With starlette and uvicorn unimportable, `runlog report` still works."""
    program = (
        "import sys\n"
        "sys.modules['starlette'] = sys.modules['uvicorn'] = None\n"
        "from runlog.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    target = tmp_path / "plain.html"

    done = subprocess.run(
        [sys.executable, "-c", program, "report", str(demo), "-o", str(target)],
        capture_output=True,
        text=True,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(target)
    assert 'id="runlog-data"' in target.read_text()
