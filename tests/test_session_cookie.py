"""The session cookie is read from the Cookie header as aiohttp's parser reads it."""

from __future__ import annotations

import random

import pytest
from aiohttp.test_utils import make_mocked_request

from proxy.web.pages import last_cookie

NAME = "weston_session"


def aiohttp_reads(header: str) -> str | None:
    return make_mocked_request("GET", "/", headers={"Cookie": header}).cookies.get(NAME)


@pytest.mark.parametrize(
    "header",
    [
        "",
        "weston_session=abc",
        "a=1; weston_session=abc; b=2",
        "weston_session=first; weston_session=second",  # the last one wins, as in aiohttp
        "xweston_session=no; weston_sessionx=no",
        "a=1;weston_session=tight;b=2",
        "  weston_session = spaced ; c=3",
        "weston_session=",
        "weston_session",
        "weston_session=a=b",
    ],
)
def test_reads_the_same_value_as_aiohttp(header: str) -> None:
    assert last_cookie(header, NAME) == aiohttp_reads(header)


def test_agrees_with_aiohttp_on_generated_headers() -> None:
    rng = random.Random(7)
    names = [NAME, "a", "b", "weston_csrf", "xweston_session", "weston_sessio"]
    for _ in range(2000):
        parts = []
        for _ in range(rng.randint(0, 5)):
            value = "".join(rng.choice("abcXYZ019-_") for _ in range(rng.randint(0, 12)))
            parts.append(f"{rng.choice(names)}={value}")
        header = rng.choice(["; ", ";"]).join(parts)
        assert last_cookie(header, NAME) == aiohttp_reads(header), header
