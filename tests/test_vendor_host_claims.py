"""Which vendor serves which host is the configuration's to say, and check-config refuses what
would hand hosts to the wrong party: a wildcard over a public suffix (every registrant under it,
with the vendor's assertion), one vendor's never_proxy taking another's hosts, another vendor
serving a vendor's own origin, start or login address (with its own adapter and eligibility)."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.ezproxy import convert
from tests.test_check_config_cross import check as check_lines
from tests.test_check_config_cross import vendor


def check(tmp_path: Path, vendors: dict[str, str]) -> tuple[int, str]:
    """check-config's exit status and its problem lines, as one text."""
    code, problems = check_lines(tmp_path, vendors)
    return code, "\n".join(problems)


@pytest.mark.parametrize(
    "suffix", ["com", "co.uk", "s3.amazonaws.com", "blogspot.com", "co.za", "com.mx", "github.io"]
)
def test_a_wildcard_over_a_public_suffix_is_refused(tmp_path: Path, suffix: str) -> None:
    """`*.s3.amazonaws.com` would serve anyone's bucket as the vendor, assertion included."""
    code, out = check(
        tmp_path,
        {
            "films": vendor(
                "films", "www.films.test", ["www.films.test", f"*.{suffix}"], auth="assertion"
            )
        },
    )
    assert code == 1 and f"'*.{suffix}' would proxy a whole public suffix" in out, out


def test_a_wildcard_over_a_vendors_own_domain_is_accepted(tmp_path: Path) -> None:
    code, out = check(
        tmp_path, {"films": vendor("films", "www.films.test", ["*.films.test", "*.cdn.films.test"])}
    )
    assert code == 0, out


def test_the_importer_leaves_out_a_domain_over_a_public_suffix() -> None:
    """EZproxy `DJ s3.amazonaws.com` (a common CDN line) does not become `*.s3.amazonaws.com`."""
    result = convert(
        "Title Films\nURL https://www.films.test/\nDJ films.test\nDJ s3.amazonaws.com\n"
    )
    (stanza,) = result.stanzas
    assert stanza.vendor is not None
    assert "*.s3.amazonaws.com" not in stanza.vendor["hosts"], stanza.vendor["hosts"]
    assert "*.films.test" in stanza.vendor["hosts"]


def test_never_proxy_outside_the_vendors_own_hosts_is_refused(tmp_path: Path) -> None:
    """A never_proxy in jstor.toml naming ebsco's host took it out of the proxy for everyone:
    ebsco's start page 404, its links unrewritten (patrons then went to ebsco directly)."""
    files = {
        "ebsco": vendor("ebsco", "search.ebscohost.test", ["search.ebscohost.test"]),
        "jstor": vendor(
            "jstor", "www.jstor.test", ["*.jstor.test"],
            'never_proxy = ["search.ebscohost.test", "ads.jstor.test", "*.cdn.jstor.test"]\n',
        ),
    }  # fmt: skip
    code, out = check(tmp_path, files)
    assert code == 1, out
    assert "jstor.toml: never_proxy[0]: 'search.ebscohost.test' is not under" in out
    assert "never_proxy[1]" not in out and "never_proxy[2]" not in out


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("", "origin"),
        ('start_url = "https://go.gale.test/start"\n', "start_url"),
    ],
)
def test_a_vendors_own_address_served_as_another_vendor_is_refused(
    tmp_path: Path, extra: str, key: str
) -> None:
    """gale's `*.gale.test` covers go.gale.test, but news lists it exactly, and the more specific
    entry wins: gale's starting point went out with news's adapter and eligibility."""
    origin = "go.gale.test" if key == "origin" else "www.gale.test"
    files = {
        "gale": vendor("gale", origin, ["*.gale.test"], extra),
        "news": vendor("news", "www.news.test", ["www.news.test", "go.gale.test"]),
    }
    code, out = check(tmp_path, files)
    assert code == 1, out
    assert f"gale.toml: {key}: go.gale.test is served as vendor 'news', not 'gale'" in out
