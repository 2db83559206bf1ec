"""Log redaction: only allowlisted keys, scrubbed values, foreign records reduced."""

from __future__ import annotations

import io
import json
import logging

from proxy.logs import Redact, configure_logging, get_logger
from tests.canary import CANARY, leaks


def test_redact_drops_unknown_keys_and_scrubs_values() -> None:
    out = Redact()(
        None,
        "info",
        {
            "event": "x",
            "card": CANARY.uid,
            "error": f"mail {CANARY.email} from 198.51.100.7 at /a?q=1",
        },
    )
    assert "card" not in out
    assert (
        CANARY.email not in out["error"]
        and "198.51.100.7" not in out["error"]
        and "q=1" not in out["error"]
    )


def test_library_records_lose_their_message() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    logging.getLogger("aiohttp.server").error(
        "Error handling request from 198.51.100.7 GET /x?card=%s", CANARY.uid
    )
    get_logger().info("login", outcome="success", patron=CANARY.uid)
    text = stream.getvalue()
    assert leaks(text.encode()) == [] and "198.51.100.7" not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines[0]["event"] == "library_log" and lines[0]["logger"] == "aiohttp.server"
    assert (
        lines[1] == {**lines[1], "event": "login", "outcome": "success"}
        and "patron" not in lines[1]
    )
