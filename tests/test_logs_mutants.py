"""From a mutation sweep of the logs, metrics and error pages (1 December 2026): each test here
kills a mutant the rest of the suite let live (named in its docstring) and proves what a patron,
IT staff or the privacy officer relies on: nothing that names a patron in a log line, a metric or a
refused request's page; an outage answered with its status and reason. Unit-level where the
behaviour is local."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ipaddress
import json
from typing import Any

import pytest
import yarl

from proxy.canary_detector import Canary, CanaryDetector
from proxy.logs import ALLOWED_KEYS, Redact
from tests.canary import CANARY, leaks

# ----------------------------------------------------------------------------- proxy/logs.py


def _line(**fields: object) -> str:
    return json.dumps(Redact()(None, "warning", {"event": "x", **fields}), default=str)


def test_a_list_value_in_a_log_line_is_scrubbed_like_a_string() -> None:
    """kills: proxy/logs.py:Redact.__call__ — `[scrub(v)[:500] if isinstance(v, str) else v ...]`
    → `[v for v in value]`.

    `problems` (config check) and other list values are logged as lists; an e-mail address, a
    client address or a search in one of them must be cut as in a plain string value (P5)."""
    text = _line(
        problems=[f"mail {CANARY.email}", "from 198.51.100.7", f"/search?q={CANARY.uid}", 3]
    )
    assert leaks(text.encode()) == [], text
    assert "198.51.100.7" not in text and "q=" not in text, text
    assert json.loads(text)["problems"][3] == 3  # numbers are kept as they are


def test_an_object_value_in_a_log_line_is_scrubbed_after_str() -> None:
    """kills: proxy/logs.py:Redact.__call__ — `value = scrub(str(value))[:200]` →
    `value = str(value)[:200]`.

    A value that is neither text nor a number (a yarl URL the client raised with, an
    ipaddress object, an exception) is written as its text: that text must lose the patron's
    address and the search in the URL just as a string would (P3, P5)."""
    text = _line(
        error=yarl.URL(f"https://www.vendor.test/search?q={CANARY.uid}"),
        reason=ipaddress.ip_address("198.51.100.7"),
        dependency=ValueError(f"bad mail {CANARY.email}"),
    )
    assert leaks(text.encode()) == [], text
    assert "198.51.100.7" not in text, text


def test_a_full_eight_group_ipv6_client_address_is_cut() -> None:
    """kills: proxy/logs.py:scrub — `text = _IPV6.sub("[ip]", text)` removed.

    The compressed IPv6 spelling (`::`) is tested elsewhere; the full spelling, with no `::`,
    is how some clients and load balancers write an address, and it names the patron's
    connection just the same (P3)."""
    for address in ("2001:0db8:85a3:0000:0000:8a2e:0370:7334", "2001:db8:1:2:3:4:5:6"):
        text = _line(reason=f"refused {address} for patron")
        assert address not in text and "[ip]" in text, text


def test_no_key_that_could_name_a_patron_a_place_or_a_search_is_allowed_in_logs() -> None:
    """kills: proxy/logs.py:ALLOWED_KEYS — adding `path` (or `url`, `ip`, `user` ...) to it.

    The allowlist is the only thing that keeps a key out of a log line. A key naming a patron,
    their address or what they fetched, once allowed, is written whenever any code passes it,
    scrubbed only of addresses, e-mails and query strings: the path of the article a patron
    read would reach the log (P5)."""
    forbidden = {
        "path", "url", "uri", "query", "host", "referer", "ip", "remote", "client", "peer",
        "user", "username", "uid", "patron", "dn", "email", "mail", "name", "barcode", "card",
        "session", "session_id", "sid", "cookie", "headers", "body", "password", "pin",
        "location", "target", "href", "search", "sub",
    }  # fmt: skip
    assert not (ALLOWED_KEYS & forbidden), ALLOWED_KEYS & forbidden
    # and the pipeline drops them all
    out = Redact()(None, "info", {"event": "x", **{k: "v" for k in forbidden}})
    assert set(out) == {"event"}


# ----------------------------------------------------------------------- proxy/canary_detector.py


def test_the_detector_finds_a_four_character_pin() -> None:
    """kills: proxy/canary_detector.py:canary_forms — `len(form) >= 4` → `len(form) > 4`.

    A four-digit PIN is the commonest library PIN: the live compliance check must find it
    raw in what a vendor received, or a leaked PIN passes as clean (P2)."""
    leaks_found = CanaryDetector([Canary("PIN", "7731")]).find(b"GET /x?pin=7731 HTTP/1.1")
    assert [(leak.label, leak.encoding) for leak in leaks_found] == [("PIN", "raw")]


def test_the_detector_finds_the_hash_of_a_lower_cased_e_mail() -> None:
    """kills: proxy/canary_detector.py:canary_forms — the `raw.lower()` digest line removed.

    Ad and tracking scripts match people by the sha256 of their lower-cased e-mail address. A
    patron's address stored with capitals (as a directory often does) must be found when a
    vendor receives that hash (P1)."""
    email = "Zebulon.Canaryfeather@Canary.invalid"
    sent = hashlib.sha256(email.lower().encode()).hexdigest().encode()
    found = CanaryDetector([Canary("e-mail", email)]).find(b"em=" + sent)
    assert [leak.label for leak in found] == ["e-mail"]


def test_the_detector_finds_base64url_with_its_url_safe_letters() -> None:
    """kills: proxy/canary_detector.py:canary_forms — the base64url form left as plain base64
    (`frag.replace(b"+", b"-").replace(b"/", b"_")` → `frag`).

    A JWT claim or a URL token carries a value in base64url, where `+` and `/` are `-` and `_`:
    a patron's value whose base64 holds those letters must still be found (P1)."""
    value = "Canary>>>???~~~"
    plain = base64.b64encode(value.encode())
    assert b"+" in plain or b"/" in plain  # the case this test is about
    sent = base64.urlsafe_b64encode(b'{"n":"' + value.encode() + b'"}').rstrip(b"=")
    found = CanaryDetector([Canary("name", value)]).find(b"token=" + sent)
    assert [leak.label for leak in found] == ["name"]


# ----------------------------------------------------------------------------- proxy/errors.py


def test_a_vendor_url_the_client_cannot_use_is_a_502_kind_of_failure_not_a_crash() -> None:
    """kills: proxy/errors.py:vendor_failures — `except (OSError, ValueError)` →
    `except OSError`.

    aiohttp raises `InvalidURL` (a ValueError) for a vendor address it cannot use (a redirect
    to a garbled URL). It must become VendorUnavailable, which the patron sees as the 502
    "database not answering" page naming the database, not an internal error (P7)."""
    from aiohttp import InvalidURL

    from proxy.errors import VendorUnavailable, vendor_failures

    for raised in (InvalidURL("http://[bad"), ValueError("bad URL")):
        try:
            with vendor_failures("gale"):
                raise raised
        except VendorUnavailable as exc:
            assert str(exc) == "gale" and exc.__cause__ is raised
        else:  # pragma: no cover - the mutant
            raise AssertionError("not turned into VendorUnavailable")


def test_a_broken_pipe_or_aborted_connection_is_a_reset_for_it_staff() -> None:
    """kills: proxy/errors.py:network_failure — `(ConnectionResetError, BrokenPipeError,
    ConnectionAbortedError)` → `ConnectionResetError`.

    A vendor that drops the connection while the proxy writes a request body shows as a broken
    pipe or an aborted connection: IT staff must see "reset" (the vendor hung up), not a vague
    "protocol" failure, in the log and the `kind` label of weston_proxy_vendor_failures."""
    from proxy.errors import VendorUnavailable, failure_kind

    for met in (BrokenPipeError(), ConnectionAbortedError()):
        failure = VendorUnavailable("v")
        failure.__cause__ = met
        assert failure_kind(failure) == ("reset", ""), met


def test_a_store_failure_without_a_reason_still_says_unavailable() -> None:
    """kills: proxy/errors.py:StoreUnavailable.__init__ — `reason or "unavailable"` → `reason`.

    /readyz's `store_reason` and the log say why the store failed; a failure raised without a
    reason must still say "unavailable", never an empty word IT staff cannot act on."""
    from proxy.errors import StoreUnavailable

    assert StoreUnavailable().reason == "unavailable"
    assert StoreUnavailable("x", reason="read-only").reason == "read-only"


# ------------------------------------------------------------------------------- proxy/ops.py


class _Dep:
    """A directory or store whose ping does what the test says (no patron data anywhere)."""

    def __init__(self, ping: object = None, count: object = 0) -> None:
        self._ping, self._count = ping, count

    async def ping(self) -> None:
        if self._ping == "hang":
            await asyncio.sleep(30)
        elif isinstance(self._ping, BaseException):
            raise self._ping

    async def count(self) -> int:
        if isinstance(self._count, BaseException):
            raise self._count
        assert isinstance(self._count, int)
        return self._count


def _services(directory: _Dep, store: _Dep, *, timeout_s: float = 2.0) -> Any:
    from types import SimpleNamespace

    from proxy.metrics import Metrics

    return SimpleNamespace(
        directory=directory,
        sessions=SimpleNamespace(store=store),
        config=SimpleNamespace(
            directory=SimpleNamespace(timeout_s=timeout_s),
            server=SimpleNamespace(metrics_from=(), trusted_proxies=()),
        ),
        metrics=Metrics(),
        vendors={"gale": None},
        admission=SimpleNamespace(in_flight={}, waiting={}),
    )


async def _ask(handler: Any, svc: Any, path: str) -> tuple[int, bytes]:
    from aiohttp import web
    from aiohttp.test_utils import make_mocked_request

    from proxy.services import SERVICES

    app = web.Application()
    app[SERVICES] = svc
    resp = await handler(make_mocked_request("GET", path, app=app))
    return resp.status, resp.body


def _gauge(svc: Any, name: str, **labels: str) -> float | None:
    value: float | None = svc.metrics.registry.get_sample_value(name, labels)
    return value


async def test_readyz_says_503_and_why_when_the_directory_socket_fails() -> None:
    """kills: proxy/ops.py:_failure — `except (DirectoryUnavailable, OSError)` →
    `except DirectoryUnavailable`.

    A directory (or store) check that fails with a plain socket error (refused, reset) must
    make /readyz answer 503 naming it, so the load balancer takes the node out; not a 500
    with a traceback, which a probe reads the same but IT staff cannot read (P7)."""
    from proxy import ops

    svc = _services(_Dep(ConnectionRefusedError()), _Dep())
    status, body = await _ask(ops.readyz, svc, "/readyz")
    assert status == 503, body
    assert json.loads(body) == {"directory": "unavailable", "store": "ok", "failing": "directory"}


async def test_readyz_says_503_timeout_when_the_store_never_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """kills: proxy/ops.py:_failure — `except TimeoutError: return "timeout"` removed.

    A Redis that accepts the connection and then says nothing: /readyz must still answer, 503,
    with `store_reason` "timeout", within its own bound, not raise (P7)."""
    from proxy import ops

    real = ops._failure

    async def quick(ping: Any, timeout: float) -> str | None:
        return await real(ping, min(timeout, 0.2))

    monkeypatch.setattr(ops, "_failure", quick)
    svc = _services(_Dep(), _Dep("hang"))
    status, body = await _ask(ops.readyz, svc, "/readyz")
    assert status == 503, body
    got = json.loads(body)
    assert got["store"] == "unavailable" and got["store_reason"] == "timeout", got


async def test_dependency_gauges_follow_each_dependency() -> None:
    """kills: proxy/ops.py:dependency_failures — `labels("store").set(0 if store else 1)` →
    `set(1)` (the directory's twin is killed by test_metrics).

    weston_proxy_dependency_up is what alerts IT staff: a store that is down must read 0, a
    directory that is down 0, each independently of the other."""
    from proxy import ops
    from proxy.errors import DirectoryUnavailable, StoreUnavailable

    svc = _services(_Dep(), _Dep(StoreUnavailable(reason="read-only")))
    assert await ops.check_dependencies(svc) == (True, False)
    assert _gauge(svc, "weston_proxy_dependency_up", dependency="store") == 0
    assert _gauge(svc, "weston_proxy_dependency_up", dependency="directory") == 1
    svc = _services(_Dep(DirectoryUnavailable("down")), _Dep())
    assert await ops.check_dependencies(svc) == (False, True)
    assert _gauge(svc, "weston_proxy_dependency_up", dependency="store") == 1
    assert _gauge(svc, "weston_proxy_dependency_up", dependency="directory") == 0


async def test_metrics_still_answer_and_say_store_down_when_the_session_count_fails() -> None:
    """kills: proxy/ops.py:metrics — `except StoreUnavailable: ...set(0)` → `pass`.

    A scrape while Redis is down must still answer 200 and show the store as down (the
    session count could not be read), so the alert fires from /metrics alone."""
    from proxy import ops
    from proxy.errors import StoreUnavailable

    svc = _services(_Dep(), _Dep(count=StoreUnavailable(reason="timeout")))
    svc.metrics.dependency_up.labels("store").set(1)
    status, body = await _ask(ops.metrics, svc, "/metrics")
    assert status == 200
    assert b'weston_proxy_dependency_up{dependency="store"} 0.0' in body, body


# ------------------------------------------------------------------------ proxy/secret_mask.py
# A shared-login vendor's page echoing the library-wide account's password (or its Basic
# token) in some encoding: the patron's browser must get only the mask (P2: the credential is
# the library's, and a page shown on a public computer must not hand it to the next user).


def _masked(password: str, echoed: str, ctype: str = "text/html") -> bytes:
    from tests.test_shared_login_refusals import masked_body

    return masked_body(password, f"<p>{echoed}</p>".encode(), [], ctype)


def test_a_password_percent_encoded_with_lower_case_hex_is_masked() -> None:
    """kills: proxy/secret_mask.py:secret_spellings — the lower-case-hex variant
    (`_PERCENT.sub(... .lower() ...)`) dropped.

    Many encoders (Go's, some PHP and Java libraries, browsers' own forms re-rendered by a
    server) write `%2f`, not `%2F`: a page echoing a form field so must not show the
    password."""
    from proxy.secret_mask import MASK

    password = "Lib/Pass word#9"
    echoed = "Lib%2fPass%20word%239"
    out = _masked(password, f"value={echoed}")
    assert echoed.encode() not in out and MASK.encode() in out, out


def test_the_basic_token_json_escaped_with_slashes_is_masked() -> None:
    """kills: proxy/secret_mask.py:secret_spellings — `for text in (password, basic_token)` →
    `(password,)` in the JSON loop.

    A vendor's debug page listing the request headers as PHP's json_encode writes them
    escapes `/` as `\\/`; the library account's HTTP Basic token must be masked there too."""
    import base64

    from proxy.secret_mask import MASK
    from tests.test_shared_login_refusals import LIBRARY_USER

    password = "Weston?~Pass1"
    token = base64.b64encode(f"{LIBRARY_USER}:{password}".encode()).decode()
    assert "/" in token  # the case this test is about
    echoed = json.dumps({"Authorization": f"Basic {token}"}).replace("/", "\\/")
    out = _masked(password, echoed, "application/json")
    assert token.replace("/", "\\/").encode() not in out and MASK.encode() in out, out


def test_a_non_ascii_password_as_encode_uri_component_writes_it_is_masked() -> None:
    """kills: proxy/secret_mask.py:_percent_encoded — `byte < 128 and (c.isalnum() or c in
    safe)` → `c.isalnum() or c in safe`.

    JavaScript's encodeURIComponent keeps `~!` and percent-encodes the UTF-8 bytes of `é`:
    a vendor page that puts the password in a link so must show the mask, whatever
    non-ASCII letter the library chose for its password."""
    from proxy.secret_mask import MASK

    password = "Pé~!x-Biblio"
    echoed = "P%C3%A9~!x-Biblio"  # encodeURIComponent(password)
    out = _masked(password, f'<a href="/x?p={echoed}">x</a>')
    assert echoed.encode() not in out and MASK.encode() in out, out


def test_a_password_with_a_quote_html_escaped_as_decimal_is_masked() -> None:
    """kills: proxy/secret_mask.py:secret_spellings — `escaped.replace("&#x27;", "&#39;")` →
    `escaped`.

    PHP's htmlspecialchars and most templates write `'` as `&#39;` (Python writes `&#x27;`):
    an account page with the password filled in must show the mask."""
    from proxy.secret_mask import MASK

    password = "Lib'Pass<9>"
    echoed = "Lib&#39;Pass&lt;9&gt;"
    out = _masked(password, f'<input value="{echoed}">')
    assert echoed.encode() not in out and MASK.encode() in out, out


def test_a_password_the_pages_charset_cannot_write_is_still_masked_in_its_encoded_forms() -> None:
    """kills: proxy/secret_mask.py:mask_pattern — `except UnicodeEncodeError: continue` →
    `return None`.

    A password with a letter Latin-1 cannot write (`ł`) cannot appear raw in a Latin-1 page,
    but its percent-encoded spelling can: that spelling must still be masked, not every
    spelling given up for that page."""
    from proxy.secret_mask import MASK, mask_pattern, secret_spellings

    password = "Biblioteka-zł9"
    found = mask_pattern(secret_spellings(password, "dG9rZW4="), "latin-1")
    assert found is not None
    pattern, _ = found
    page = b"<a href='/x?p=Biblioteka-z%C5%829'>x</a>"
    assert pattern.sub(MASK.encode(), page) == f"<a href='/x?p={MASK}'>x</a>".encode()


def test_a_password_json_escaped_with_slashes_is_masked() -> None:
    """kills: proxy/secret_mask.py:secret_spellings — `forms |= {escaped,
    escaped.replace("/", "\\/")}` → `forms |= {escaped}`.

    PHP's json_encode writes `/` as `\\/`: an account page's JSON with the password in it
    must show the mask."""
    from proxy.secret_mask import MASK

    password = "Lib/Pass/7"
    echoed = json.dumps({"password": password}).replace("/", "\\/")
    out = _masked(password, echoed, "application/json")
    assert b"Lib\\/Pass\\/7" not in out and MASK.encode() in out, out


# ----------------------------------------------------------------------------- proxy/metrics.py


def test_a_status_outside_http_s_range_is_counted_as_other() -> None:
    """kills: proxy/metrics.py:status_class — `100 <= status < 600` → `100 <= status`.

    A vendor (or a broken middlebox) answering with a status of 600 or more must be counted
    under the fixed label "other": the `status_class` label holds only vocabulary words, and a
    hostile vendor cannot mint new label values."""
    from proxy.metrics import LABEL_VOCABULARY, status_class

    for status in (0, 99, 600, 999, 1000):
        assert status_class(status) == "other", status
    for status, word in ((100, "1xx"), (204, "2xx"), (302, "3xx"), (451, "4xx"), (599, "5xx")):
        assert status_class(status) == word and word in LABEL_VOCABULARY


# ------------------------------------------------------------------------ proxy/logs.py (more)


def test_aiohttps_access_log_stays_off() -> None:
    """kills: proxy/logs.py:configure_logging — `getLogger("aiohttp.access").disabled = True`
    → `False`.

    aiohttp's access log writes one line per request with its time: even with the message cut
    to "library_log", that is a record of when each page was fetched, the activity record P5
    says the proxy does not keep."""
    import io
    import logging

    from proxy.logs import configure_logging

    access = logging.getLogger("aiohttp.access")
    access.disabled = False
    stream = io.StringIO()
    configure_logging("debug", "json", stream=stream)
    assert access.disabled
    access.info('198.51.100.7 "GET /search?q=x HTTP/1.1" 200')
    assert stream.getvalue() == ""


# ------------------------------------------------------------------------- proxy/http_errors.py


async def _refused(cookie: str) -> tuple[int, bool, bytes]:
    """One raw GET /menu with this Cookie header to a server with the proxy's refused-request
    pages installed (put back as they were afterwards): its status, whether it closed, its bytes."""
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    from proxy import http_errors
    from tests.test_hostile_inputs import raw_exchange

    pages = http_errors._pages
    http_errors.install("http://proxy.localhost:8080", 8190)
    server = TestServer(web.Application())
    await server.start_server()
    try:
        request = f"GET /menu HTTP/1.1\r\nHost: proxy.localhost\r\nCookie: {cookie}\r\n\r\n"
        status, closed, response = await raw_exchange(server.port or 0, request.encode())
    finally:
        await server.close()
        http_errors._pages = pages
    return status, closed, response


async def test_a_cookie_bomb_is_answered_431_naming_no_cookie_in_the_page_or_the_log() -> None:
    """kills: proxy/http_errors.py:install.handle_error — `error=type(exc).__name__` →
    `error=str(exc)` in the `request_refused` log line.

    The parser's message quotes the start of the offending line: for an over-long Cookie
    header, the patron's cookies, session cookie first. The log keeps `error` (an allowed key)
    and scrubs only addresses, e-mails and queries, so the exception's text would put the
    session id in the log (P5). The page names no byte of the request either, and the
    connection is closed."""
    import io

    from proxy.logs import configure_logging

    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    session = f"S3ss{CANARY.uid}Zq"
    status, closed, response = await _refused(f"weston_session={session}; bomb={'b' * 9000}")
    logged = stream.getvalue()
    assert status == 431 and closed, response[:200]
    assert session.encode() not in response and CANARY.uid.encode() not in response
    assert "request_refused" in logged and session not in logged and CANARY.uid not in logged, (
        logged
    )


def test_each_request_is_counted_under_its_own_status_class_and_no_path_reaches_metrics() -> None:
    """kills: proxy/metrics.py:Metrics.observe — the per-(vendor, status class) child cache
    looked up by vendor alone.

    IT staff read vendor errors from `weston_proxy_requests{status_class="5xx"}`: a 5xx after
    a 2xx must not be counted as a 2xx (nor a vendor's count of third-party origins held
    back lost). The request's path (a search, a patron's card number in it) is never a
    label or a value (P6)."""
    from proxy.forward import Observation
    from proxy.metrics import Metrics

    m = Metrics()
    path = f"/search?q=card+{CANARY.uid}"
    for status, hosts in ((200, 3), (503, 0), (503, 2)):
        m.observe(Observation("gale", "GET", status, 10, 0.05, "text/html", path, False, hosts))
    value = m.registry.get_sample_value
    assert value("weston_proxy_requests_total", {"vendor": "gale", "status_class": "2xx"}) == 1
    assert value("weston_proxy_requests_total", {"vendor": "gale", "status_class": "5xx"}) == 2
    assert value("weston_proxy_blocked_third_party_total", {"vendor": "gale"}) == 5
    text = m.render()
    assert leaks(text) == [] and b"search" not in text


async def test_a_request_the_parser_refuses_for_a_bad_character_is_a_fixed_400_page() -> None:
    """kills: proxy/http_errors.py:install.handle_error — `if not isinstance(exc,
    HttpProcessingError)` → `if not isinstance(exc, LineTooLong)`.

    Not only an over-long line: a header the parser refuses for a character it may not hold
    gets aiohttp's own answer, which quotes the parser's message and so the start of the line,
    the patron's session cookie in it. A vendor script that can make such a request can read
    that same-origin answer (P1). It must be the fixed "could not be read" page instead."""
    from proxy import http_errors

    session = f"S3ss{CANARY.uid}Zq"
    status, _, response = await _refused(f"weston_session={session}\x01x")
    assert status == 400, response[:300]
    assert http_errors.UNREADABLE[0].encode() in response, response[:300]
    assert session.encode() not in response and CANARY.uid.encode() not in response
