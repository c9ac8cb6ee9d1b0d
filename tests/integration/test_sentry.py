"""A real Sentry client sees runlog's records through the stdlib bridge (#14)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Sentry's LoggingIntegration with an in-process transport: nothing leaves
# the process (the DSN names a closed port on loopback and is never used).
PROGRAM = """
import json, logging
import sentry_sdk
from sentry_sdk.integrations.logging import LoggingIntegration
from sentry_sdk.transport import Transport

events = []

class Capture(Transport):
    def capture_envelope(self, envelope):
        events.extend(i.payload.json for i in envelope.items if i.type == "event")

sentry_sdk.init(
    dsn="http://public@127.0.0.1:9/1",
    transport=Capture,
    default_integrations=False,
    integrations=[LoggingIntegration(level=logging.INFO, event_level=logging.ERROR)],
)
import runlog
runlog.configure(console_format="off", stdlib_propagate=PROPAGATE)
run = runlog.start_run("fw", "r1", "runs", archive=False)
log = runlog.get_logger("app.payments", component="billing")
with run.step(1):
    log.info("charging", order_id=7)
    log.error("payment_failed", order_id=7, api_key="sk-very-secret-1")
run.finish()
sentry_sdk.flush()
print(json.dumps(events, default=str))
"""


Events = list[dict[str, object]]


def sentry_events(tmp_path: Path, propagate: bool) -> tuple[str, Events]:
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM.replace("PROPAGATE", str(propagate))],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    events: Events = json.loads(done.stdout)
    return done.stdout, events


def test_sentry_gets_the_error_with_its_fields_and_a_breadcrumb(tmp_path: Path) -> None:
    """With stdlib_propagate, an error is a Sentry event carrying run, step, fields."""
    raw, events = sentry_events(tmp_path, propagate=True)
    [event] = events
    assert event["logentry"]["message"] == "payment_failed"  # type: ignore[index]
    assert event["logger"] == "app.payments"
    extra = event["extra"]
    assert isinstance(extra, dict)
    assert {k: extra[k] for k in ("component", "run_id", "step", "order_id")} == {
        "component": "billing",
        "run_id": "r1",
        "step": 1,
        "order_id": 7,
    }
    crumbs = event["breadcrumbs"]["values"]  # type: ignore[index]
    assert "charging" in [crumb["message"] for crumb in crumbs]
    assert "sk-very-secret-1" not in raw


def test_sentry_sees_nothing_without_the_bridge(tmp_path: Path) -> None:
    """By default runlog's records bypass stdlib logging: Sentry gets no event."""
    _, events = sentry_events(tmp_path, propagate=False)
    assert events == []
