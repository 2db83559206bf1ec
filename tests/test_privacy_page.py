"""The /privacy transparency page: for every vendor, in plain words generated from its config, what
it receives, with its privacy policy link and contract dates; public, no session needed."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import pytest

from proxy.auth import hash_password
from tests.canary import CANARY
from tests.harness import ProxyDriver, RecordingVendor, vendor_toml, write_config, write_secret

SHARED = (
    '\n[shared_login]\nmethod = "basic"\n'
    'username_file = "secrets/user"\npassword_file = "secrets/password"\n'
)
# id: (auth, extra TOML, what the page must say about it)
VENDORS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "ipdb": ("ip", "", ("recognises the library's address, not yours",)),
    "anondb": (
        "assertion",
        "",
        ("Your library's name and that you are a valid patron; nothing else.",),
    ),
    "pseudodb": (
        "assertion",
        'release = "pseudonymous"\n',
        ("a code that lets this vendor recognise you on return visits", "unique to this vendor"),
    ),
    "shareddb": ("shared-login", SHARED, ("one shared library account",)),
    "refdb": (
        "referer",
        'referer = "https://westonlibrary.org/db/r-1"\n',
        ("a link address agreed with the library", "nothing about you is sent"),
    ),
}


def _contract(vid: str, i: int) -> str:
    permits = "permits_pseudonymous_id = true\n" if vid == "pseudodb" else ""
    return (
        f'\n[contract]\nprivacy_policy_url = "https://{vid}.example/privacy"\n'
        f"reviewed = 2026-0{i + 1}-15\nexpires = 2099-0{i + 1}-28\n{permits}"
    )


@pytest.fixture
async def driver(
    tmp_path: Path, port: int, vendor_factory: Any, proxy_factory: Any
) -> tuple[ProxyDriver, list[RecordingVendor]]:
    write_secret(tmp_path / "vendors" / "secrets" / "user", "library-account")
    write_secret(tmp_path / "vendors" / "secrets" / "password", "library-password")
    (tmp_path / "patrons.toml").write_text(
        f'[[patron]]\ncard = "{CANARY.uid}"\nhash = "{hash_password(CANARY.password)}"\n'
    )
    vendors = []
    texts = {}
    for i, (vid, (auth, extra, _)) in enumerate(VENDORS.items()):
        v = await vendor_factory(f"www.{vid}.test")
        vendors.append(v)
        texts[vid] = vendor_toml(
            vid, v, auth=auth, title=f"{vid.title()} Title", extra=extra + _contract(vid, i)
        )
    cfg = write_config(
        tmp_path,
        port=port,
        directory='kind = "file"\npatrons_file = "patrons.toml"\n',
        vendors=texts,
    )
    return await proxy_factory(cfg), vendors


async def _page(driver: ProxyDriver) -> str:
    r = await driver.own("GET", "/privacy")
    assert r.status == 200
    assert r.headers["Content-Type"].startswith("text/html")
    text: str = await r.text()
    return text


def _row(page: str, title: str) -> str:
    """The table row of one vendor, with markup and entities resolved to plain text."""
    m = re.search(rf"<tr><th scope=\"row\">{re.escape(title)}</th>(.*?)</tr>", page, re.S)
    assert m, f"no row for {title}"
    return m.group(1)


async def test_privacy_page_works_without_a_session(driver: Any) -> None:
    """No cookie at all: 200 (not a redirect to /login), and no vendor is contacted."""
    d, vendors = driver
    assert d.session_id() is None
    await _page(d)
    assert all(v.requests == [] for v in vendors)


@pytest.mark.parametrize("vid", list(VENDORS))
async def test_each_vendor_listed_with_plain_words_disclosure(driver: Any, vid: str) -> None:
    d, _ = driver
    row = html.unescape(re.sub(r"<[^>]+>", " ", _row(await _page(d), f"{vid.title()} Title")))
    for phrase in VENDORS[vid][2]:
        assert phrase in row


@pytest.mark.parametrize("vid", list(VENDORS))
async def test_each_vendor_has_policy_link_and_contract_dates(driver: Any, vid: str) -> None:
    d, _ = driver
    i = list(VENDORS).index(vid)
    row = _row(await _page(d), f"{vid.title()} Title")
    assert f'href="https://{vid}.example/privacy"' in row
    assert f"2026-0{i + 1}-15" in row and f"2099-0{i + 1}-28" in row


async def test_only_the_pseudonymous_vendor_is_said_to_recognise_patrons(driver: Any) -> None:
    """The 'recognise you on return visits' sentence appears once: for the one vendor it is true of."""
    d, _ = driver
    text = html.unescape(await _page(d))
    assert text.count("recognise you on return visits") == 1
    assert "recognise you on return visits" in _row(text, "Pseudodb Title")


async def test_privacy_page_same_for_signed_in_patron(driver: Any) -> None:
    """Signed in, the same vendor rows are shown (the page is not personalised)."""
    d, _ = driver
    anonymous = await _page(d)
    r = await d.login(CANARY.uid, CANARY.password)
    assert r.status == 303
    signed_in = await _page(d)
    rows = lambda page: re.findall(r"<tbody>.*</tbody>", page, re.S)  # noqa: E731
    assert rows(anonymous) == rows(signed_in) != []


async def test_privacy_policy_url_must_be_http(tmp_path: Path) -> None:
    """A javascript: or other non-web policy link is refused at config time (it becomes an href)."""
    from proxy.config import load_config
    from proxy.errors import ConfigError

    (tmp_path / "patrons.toml").write_text("")
    (tmp_path / "vendors").mkdir()
    (tmp_path / "vendors" / "v.toml").write_text(
        'id = "v"\ntitle = "V"\norigin = "https://v.test"\nhosts = ["v.test"]\n'
        '[contract]\nprivacy_policy_url = "javascript:alert(1)"\n'
    )
    cfg = tmp_path / "proxy.toml"
    cfg.write_text(
        '[server]\npublic_url = "http://proxy.localhost:8080"\n'
        '[directory]\nkind = "file"\npatrons_file = "patrons.toml"\n'
        '[session]\nsecret_file = "state/s"\n'
    )
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    assert "v.toml: contract.privacy_policy_url: must be an http(s) URL" in str(err.value)
