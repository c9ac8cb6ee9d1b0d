"""read_summary_record: the run and archive a committed summary names."""

from __future__ import annotations

from runlog.archive._archiver import SummaryRecord, read_summary_record

HASH = "3ca7e7d4c11ac2126d2b2b9346703c7cec3b8ceac9b0e59d6d00e65651a31a1e"


def test_names_and_hash_are_read_from_the_header_and_archive_section() -> None:
    """Run ID, Framework, the one archive file named and its SHA-256."""
    text = (
        "Status: SUCCESS\n\nRun ID:     r-1\nFramework:  agents\n\n"
        f"== Archive ==\nFile:    run.tar.zst\nSHA-256: {HASH}\n"
    )

    assert read_summary_record(text) == SummaryRecord(
        "agents", "r-1", "run.tar.zst", HASH
    )


def test_what_is_missing_cut_or_unsafe_is_none() -> None:
    """No archive, a name cut to the width, an unsafe name: None for each."""
    text = "Run ID:     " + "x" * 65 + "...\nFramework:  ../up\n== Archive ==\nNone.\n"

    assert read_summary_record(text) == SummaryRecord(None, None, None, None)


def test_two_archive_names_name_none() -> None:
    """A summary mentioning both formats does not pick one."""
    text = f"File:    run.tar.gz\nnote: run.tar.zst removed\nSHA-256: {HASH}\n"

    assert read_summary_record(text).archive_name is None
    assert read_summary_record(text).sha256 == HASH
