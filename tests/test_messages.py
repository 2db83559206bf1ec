"""Every page problem the proxy reports renders with a title, an explanation and an action."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.config import load_config
from proxy.services import template_env
from proxy.web.messages import MESSAGES, shown

PAGE_BUDGET = 50 * 1024


@pytest.mark.parametrize("kind", list(MESSAGES))
def test_every_message_page_says_what_happened_and_what_to_do(kind: str) -> None:
    """Each case renders with a title, an explanation and an action; no blank is left unfilled."""
    root = Path(__file__).resolve().parent.parent
    config = load_config(root / "conf" / "proxy.toml")
    m = shown(kind, {})
    html = (
        template_env(config)
        .get_template("message.html")
        .render(message=m, links=[], code=kind, signed_in=False, lang="en")
    )
    assert m.title and m.text and m.action
    assert "{" not in m.title + m.text + m.action
    assert "Traceback" not in html and len(html.encode()) < PAGE_BUDGET


@pytest.mark.parametrize(("retry_minutes", "wait"), [(1, "in 1 minute,"), (5, "in 5 minutes,")])
def test_the_sign_in_pause_names_its_minutes_in_the_right_number(
    retry_minutes: int, wait: str
) -> None:
    """Please try again in 1 minute, never in 1 minutes."""
    assert wait in shown("too_many_attempts", {"retry_minutes": retry_minutes}).action


def test_the_sign_in_pause_without_a_number_reads_a_few_minutes() -> None:
    assert "in a few minutes," in shown("too_many_attempts", {}).action


def test_the_session_ended_notice_names_both_limits_exactly() -> None:
    """The notice after a session ended names the idle time-out and the fixed lifetime (the
    proxy does not know which one ended it), worded as durations: never "1 minutes"."""
    text = shown("session_expired", {"idle_s": 90, "lifetime_s": 28800}).text
    assert "after 90 seconds without use" in text, text
    assert "8 hours after signing in" in text, text
    assert "1 minutes" not in text
