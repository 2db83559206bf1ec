"""Patron pages on the proxy's own host: sign-in, menu, sign-out, privacy notice, session time,
static files; and `message_page`, the page for every problem the proxy reports."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import json
import re
import secrets
import time
import unicodedata
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from yarl import URL

from proxy.auth import Patron, library_rule_holds, may_use, rules_changed
from proxy.config import Config
from proxy.errors import (
    BadCredentials,
    DirectoryUnavailable,
    NotEligible,
    PinExpired,
    PinMustChange,
    SessionConflict,
    StoreUnavailable,
)
from proxy.hosts import HostMap
from proxy.limits_http import http_limits
from proxy.logs import get_logger
from proxy.privacy import FORM_CHALLENGE, OWN_PAGE_HEADERS
from proxy.redirects import safe_target
from proxy.rewrite_headers import is_third_party
from proxy.services import SERVICES, Services
from proxy.sessions import Session, storage_key
from proxy.validators import session_key
from proxy.web.disclosure import has_direct_parts, vendor_disclosure
from proxy.web.forget import configured_hosts, forget_urls
from proxy.web.messages import (
    DURATION_WORDS,
    LANG,
    MESSAGES,
    UI,
    Message,
    duration,
    fill,
    shown,
)
from proxy.web.session_cookie import CSRF_COOKIE, clear_copies, session_id, session_ids

WEB_DIR = Path(__file__).parent
# Card, PIN, token, and a starting point as long as a request line, every character of it
# percent-encoded by the form.
MAX_LOGIN_BODY = 32 * 1024
LOGIN_BODY_TIMEOUT_S = 10.0
# The starting point a sign-in post asked for, kept on the request for the pages that answer it.
LOGIN_URL = "weston.login_url"
# Set on a sign-in post whose answer renews the sign-in token (`_token`).
RENEW_TOKEN = "weston.renew_token"
# Set once a sign-in post has passed its token check: a store failure from there on (the
# throttle's counters, ending the old session, starting the new one) is answered by the app's
# store page, which then renews the token too (`renew_sign_in_token`).
SIGN_IN_POST = "weston.sign_in_post"
# A note for the menu, set with the redirect after sign-in and shown once (no personal data):
# the MESSAGES kind, one of NOTICES.
NOTICE_COOKIE = "weston_notice"
NOTICES = ("not_configured", "link_too_long")
# The password policy's warnings (`pin_notice`), which carry a number and a tag.
PIN_NOTICES = ("pin_grace", "pin_expiring")
# `GET /login?again=1`: the sign-in form even for a signed-in patron, whose databases were
# decided under rules a reload has changed since (auth.rules_changed).
AGAIN = "again"
log = get_logger("proxy.pages")


def _cookie_secure(config: Config) -> bool:
    return config.public[0] == "https"


def _public(config: Config, path: str) -> str:
    return config.server.public_url.rstrip("/") + path


def render(request: web.Request, template: str, *, status: int = 200, **ctx: Any) -> web.Response:
    svc = request.app[SERVICES]
    ctx.setdefault("lang", LANG)
    # Pages also appear on mapped vendor hosts (errors there): assets and links name the proxy's
    # own host, so they never reach the vendor.
    ctx.setdefault("own", _public(svc.config, ""))
    ctx.setdefault("again", _again(request))
    html = svc.templates.get_template(template).render(**ctx)
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")


def _answers_sign_in(request: web.Request) -> bool:
    return request.method == "POST" and request.path == "/login"


def _again(request: web.Request) -> str:
    """For a page that answers a sign-in post: the sign-in form's own address, which the page
    puts in the browser's history in place of the post (static/again.js). Otherwise "".

    A page sent in answer to a post stays in history as that post, card number and PIN
    included: at a shared computer the next person could press Back and Reload and send them
    again. With the entry replaced, Reload opens the form. Without JavaScript the post is still
    there, and the sign-in token it carries no longer matches (`_token`)."""
    if not _answers_sign_in(request):
        return ""
    return login_link(request)


def login_link(request: web.Request) -> str:
    """The sign-in form's address, with the starting point the patron asked for (if any)."""
    url = request.get(LOGIN_URL, "")
    return "/login" + (f"?url={quote(url, safe='')}" if url else "")


def starting_point(request: web.Request) -> str:
    """The address a sign-in link asks for, read as EZproxy reads its links (libraries' websites
    hold years of them): `qurl` is the encoded form, and so is a `url` whose value is encoded.
    A `url` whose value starts `http://` or `https://` unencoded takes the rest of the query
    string as sent, `&`s and escapes included, whatever its own query looks like (`?&db=a9h`,
    `?fulltext&id=…`): everything after `url=` is the address, why EZproxy's documentation puts
    `url` last. Only a query whose first parameter holds an encoded `=` or `&` and no `=` of its
    own (`?q%3Da%26db%3Db&lang=en`: an encoded value, as aiohttp's client and some others send
    it with `://` decoded) is the encoded form, cut at the next `&`. Nothing is cut
    otherwise: the request line bounds the address, and `safe_target` refuses what a browser
    could not ask for."""
    qurl = request.query.get("qurl")
    if qurl:
        return qurl
    # The query as the browser sent it (yarl's `raw_query_string` may have decoded `%3A%2F%2F`).
    raw = request.raw_path.partition("?")[2]
    found = re.search(r"(?:^|&)url=", raw)
    if found is not None and re.match(r"(?i)https?://", tail := raw[found.end() :]):
        first = tail.partition("?")[2].partition("&")[0]
        if "=" in first or not re.search(r"(?i)%(?:3D|26)", first):
            return tail
    return request.query.get("url", "")


def _max_line(config: Config) -> int:
    """The longest request line the server takes: the longest address a patron can be sent to."""
    return http_limits(config).max_request_line


def _start_notice(url: str, hosts: HostMap, max_line: int) -> str | None:
    """What the menu says about a starting point `safe_target` did not take (one of NOTICES),
    or None when there is nothing useful to say (no address asked for, or a malformed one)."""
    if _elsewhere(url, hosts):
        return "not_configured"
    if safe_target(url, hosts, max_line=4 * max_line) is not None:
        return "link_too_long"  # a database's address, but longer than a request line holds
    return None


# What a starting point keeps unescaped in the menu's `url` query value: URL punctuation that
# means nothing there (`&`, `+`, `#`, `%` and space are escaped). Escaping all of it made a
# long deep link three times as long as itself, past the request line the proxy accepts.
_QUERY_SAFE = ":/?=@!$'()*,;~"


def _redirect_to_start(request: web.Request, url: str, pin: str | None = None) -> web.HTTPSeeOther:
    """The 303 to the mapped starting point, or to the menu with a notice saying why not.

    With `pin` (a PIN notice, `pin_notice`) the menu comes first: it says so once and links on
    to the starting point (its address in the menu's `url`), or says beside it why that one was
    not opened. A starting point so long that the menu's address with it would not fit a request
    line (within a few bytes of the limit a database's address may have) goes to the database
    as without `pin`: the patron reaches the page asked for, and the PIN notice is not shown.

    The Location is the target byte for byte: a `str` would go through yarl, which re-quotes
    (`%3B` → `;`, `%7E` → `~`, a lone `%` → `%25`) and so breaks a link signed over its bytes."""
    svc = request.app[SERVICES]
    max_line = _max_line(svc.config)
    menu = _public(svc.config, "/menu")
    target = safe_target(url, svc.hosts, max_line=max_line)  # None for no address
    if target is not None:
        if pin is None:
            return web.HTTPSeeOther(URL(target, encoded=True))
        query = f"?url={quote(url, safe=_QUERY_SAFE)}"
        if len(f"GET /menu{query} HTTP/1.1") > max_line:
            return web.HTTPSeeOther(URL(target, encoded=True))
        resp = web.HTTPSeeOther(URL(menu + query, encoded=True))
        _set_notice(resp, svc.config, pin)
        return resp
    resp = web.HTTPSeeOther(menu)
    # The menu says, once, why the patron is there rather than at the address asked for.
    notice = _start_notice(url, svc.hosts, max_line) if url else None
    said = ":".join(v for v in (pin, notice) if v is not None)
    if said:
        _set_notice(resp, svc.config, said)
    return resp


def _set_notice(resp: web.StreamResponse, config: Config, value: str) -> None:
    """The cookie that has the menu say something once (NOTICES, or a PIN notice), for the
    request the redirect `resp` leads to: on /menu only, for two minutes, out of scripts' reach."""
    resp.set_cookie(
        NOTICE_COOKIE,
        value,
        path="/menu",
        max_age=120,
        httponly=True,
        samesite="Lax",
        secure=_cookie_secure(config),
    )


def _pin_tag(session_id: str, value: str) -> str:
    """A tag over a PIN notice keyed by the session id, which no page script can read (the
    cookie is HttpOnly): a vendor page on a mapped host can write a cookie the menu reads, but
    cannot make the menu say the patron's PIN has expired. The key is the one the session's
    validators are sealed under (`validators.session_key`); the personalisation keeps the two
    uses apart."""
    return hashlib.blake2b(
        value.encode(), key=session_key(session_id), digest_size=12, person=b"weston-pin"
    ).hexdigest()


def pin_notice(patron: Patron, session_id: str) -> str | None:
    """The notice cookie's value for what the directory's password policy warned of at this
    sign-in (`Patron.pin_grace_left`, `pin_expires_in_s`), or None. The numbers travel in the
    patron's own browser only: nothing of them is stored or logged."""
    if patron.pin_grace_left is not None:
        value = f"pin_grace:{int(patron.pin_grace_left)}"
    elif patron.pin_expires_in_s is not None:
        value = f"pin_expiring:{int(patron.pin_expires_in_s)}"
    else:
        return None
    return f"{value}:{_pin_tag(session_id, value)}"


def _pin_message(
    asked: str | None, session: Session, contact: str
) -> tuple[Message, Message | None] | None:
    """The menu's notice for a PIN notice cookie this session's sign-in set, and the notice of
    NOTICES it carries about the starting point asked for (None if none); None if no such
    cookie."""
    kind, number, tag, start = [*(asked or "").split(":", 3), "", "", "", ""][:4]
    if kind not in PIN_NOTICES or not number.isdigit() or len(number) > 9:
        return None
    if not hmac.compare_digest(tag, _pin_tag(session.id, f"{kind}:{number}")):
        return None
    also = MESSAGES[start] if start in NOTICES else None
    n = int(number)
    if kind == "pin_expiring":
        return shown("pin_expiring", {"expires_in_s": n, "contact": contact}), also
    kind = "pin_grace_last" if n == 0 else "pin_grace"
    return shown(kind, {"grace_left": n, "contact": contact}), also


def _set_csrf(resp: web.StreamResponse, config: Config, token: str) -> None:
    """The sign-in token's cookie, which the form's `csrf` field must match."""
    resp.set_cookie(
        CSRF_COOKIE,
        token,
        path="/login",
        httponly=True,
        samesite="Strict",
        secure=_cookie_secure(config),
    )


def _token(request: web.Request) -> str:
    """The sign-in token for a form: the browser's own, or a new one; a new one on a page that
    answers a sign-in post that may have held the right card and PIN (`RENEW_TOKEN`: the
    directory was unavailable, or the card was over its limit). Replayed from the browser's
    history (Back and Reload at a shared computer, see `_again`), such a post carries a token
    that is no longer the cookie's, and is refused before its card number is looked at. A wrong
    PIN keeps the token, so a second sign-in tab open in the same browser still works."""
    if request.get(RENEW_TOKEN):
        return secrets.token_urlsafe(24)
    return request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)


def renew_sign_in_token(request: web.Request, resp: web.StreamResponse) -> None:
    """A new sign-in token on `resp` when it answers a sign-in post the proxy could not finish
    (the session store failed): the card and PIN may have been right, and replayed from the
    browser's history at a shared computer once the store is back, the post would sign the next
    person in as this patron (`_token`)."""
    if request.get(SIGN_IN_POST):
        request[RENEW_TOKEN] = True
        _set_csrf(resp, request.app[SERVICES].config, _token(request))


def message_page(
    request: web.Request,
    kind: str,
    *,
    links: list[dict[str, str]] | None = None,
    session: Session | None = None,
    forget: list[str] | None = None,
    **fmt: Any,
) -> web.Response:
    """The page for `kind` (proxy/web/messages.py); with the patron's `session`, the page shows
    the signed-in header and its sign-out button; `forget` addresses (proxy/web/forget.py) load
    as images."""
    m = shown(kind, fmt)  # a blank the caller did not fill gets a default, never a KeyError
    svc = request.app[SERVICES]
    if links is None:
        links = [{"href": _public(svc.config, "/menu"), "text": UI["back_to_menu"]}]
    resp = render(
        request,
        "message.html",
        status=m.status,
        message=m,
        links=links,
        signed_in=session is not None,
        csrf=session.csrf if session is not None else "",
        # The sign-out form must send its real Origin (`_posted_from_elsewhere`), as the sign-in
        # form does: a no-referrer page posts `Origin: null`, which a browser without fetch
        # metadata also sends from a vendor page.
        referrer="same-origin" if session is not None else "no-referrer",
        code=f"{kind} ({m.status})",  # lets help-desk staff tell which case the patron saw
        forget=forget,
    )
    if session is not None:
        resp.headers["Referrer-Policy"] = "same-origin"
    # On a vendor host the own-page headers are not added by `dispatch`; an error page there must
    # not be cached either, and may use only the proxy's own assets.
    own = _public(svc.config, "")
    for name, value in OWN_PAGE_HEADERS.items():
        resp.headers.setdefault(name, value.replace("'self'", f"'self' {own}"))
    if m.status == 503:
        resp.headers["Retry-After"] = "60"
    return resp


def _session_cookie(request: web.Request) -> str | None:
    """The session cookie's value (unquoted as aiohttp would), without parsing every other
    cookie on every proxied request; SessionConflict when the browser sent two different ones
    (proxy/web/session_cookie.py)."""
    return session_id(request)


def _set_session_cookie(resp: web.StreamResponse, config: Config, value: str) -> None:
    resp.set_cookie(
        config.server.cookie_name,
        value,
        domain=config.public[1],
        path="/",
        httponly=True,
        samesite="Lax",
        secure=_cookie_secure(config),
    )


def _clear_session_cookie(
    resp: web.StreamResponse, config: Config, request: web.Request, *, several: bool = False
) -> None:
    """Delete the session cookie the proxy set; with `several`, every copy a page could have
    added beside it too (proxy/web/session_cookie.py)."""
    if several:
        clear_copies(resp, request, config)
    else:
        resp.del_cookie(config.server.cookie_name, domain=config.public[1], path="/")


async def end_sessions(svc: Services, ids: list[str]) -> None:
    """End each session named (and forget the assertions signed for it)."""
    for sid in ids:
        svc.signer.forget(storage_key(sid))
        await svc.sessions.end(sid)


async def login_form(request: web.Request) -> web.StreamResponse:
    svc = request.app[SERVICES]
    url = starting_point(request)
    try:
        sid = _session_cookie(request)
    except SessionConflict as exc:
        # Sign-in is how the patron gets out of it: every session named ends, every copy goes.
        await end_sessions(svc, exc.ids)
        resp = _login_page(request, url=url, notice=MESSAGES["session_conflict"])
        clear_copies(resp, request, svc.config)
        return resp
    session = await svc.sessions.load(sid)
    if session is not None and AGAIN not in request.query:
        # Already signed in: go straight on, as EZproxy does for login?url=.
        raise _redirect_to_start(request, url)
    if session is not None:
        # "Sign in again" (the rules changed since the sign-in): the form, though signed in.
        return _login_page(request, url=url)
    if not sid:
        return _login_page(request, url=url)
    # A session cookie the store no longer knows: the session ended (idle or lifetime) while the
    # patron was away — logout deletes the cookie. Say so once, then drop the dead cookie. This
    # may be the next person at a shared computer: the page asks the browser to forget what
    # every configured vendor host stored (the session's own list of hosts ended with it).
    # Which limit ended it is not known here (the store forgot the session, Redis by itself), and
    # knowing would mean keeping something about the patron after the end: name both limits.
    forget = forget_urls(svc, configured_hosts(svc.config))
    limits = {"idle_s": svc.sessions.idle_timeout_s, "lifetime_s": svc.sessions.lifetime_s}
    resp = _login_page(request, url=url, notice=shown("session_expired", limits), forget=forget)
    _forget_page_headers(resp, svc.config, forget)
    _clear_session_cookie(resp, svc.config, request)
    return resp


def _login_page(
    request: web.Request,
    *,
    url: str,
    problem: Message | None = None,
    notice: Message | None = None,
    username: str = "",
    status: int = 200,
    forget: list[str] | None = None,
) -> web.Response:
    svc = request.app[SERVICES]
    token = _token(request)
    resp = render(
        request,
        "login.html",
        status=status,
        csrf=token,
        url=url,
        problem=problem,
        notice=notice,
        username=username[:64],  # the patron's own card number, so only the PIN is retyped
        signed_in=False,
        forget=forget,
    )
    # The form's answer is a redirect to the starting point on a mapped vendor host, and browsers
    # hold redirects after a form post to `form-action` too: 'self' alone would stop the patron.
    resp.headers["Content-Security-Policy"] = OWN_PAGE_HEADERS["Content-Security-Policy"].replace(
        "form-action 'self'", f"form-action 'self' {_mapped_hosts(svc.config)}"
    )
    # Not no-referrer: the form must send its real Origin (`_posted_from_elsewhere`). Same-origin
    # still sends no Referer to any other host, a vendor's included.
    resp.headers["Referrer-Policy"] = "same-origin"
    if status == 401:
        resp.headers["WWW-Authenticate"] = FORM_CHALLENGE
    _set_csrf(resp, svc.config, token)
    return resp


def _posted_from_elsewhere(request: web.Request, config: Config) -> bool:
    """Whether a form post comes from a page that is not one of the proxy's own.

    The CSRF cookie alone does not tell: a vendor page runs on a subdomain (same site) and can
    write a `weston_csrf` cookie of its own choosing for the proxy's host, then post the
    matching token, signing the patron in as someone else. Browsers say where a post comes from
    (Sec-Fetch-Site, Origin); a client that sends neither (a script, a monitor) is judged by
    the CSRF token alone. The sign-in page's Referrer-Policy is same-origin so that its own
    form sends its real Origin (a no-referrer page posts `Origin: null`, Fetch standard).
    `null` is refused unless the browser also said "same-origin" (a branding copy of an older
    base template may still make the form no-referrer): without fetch metadata (Safari before
    16.4) it is what a vendor page posting with no-referrer sends."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return True
    origin = request.headers.get("Origin")
    if origin is None:
        return False
    origin = origin.strip().lower()
    if origin == "null":
        return site is None
    return origin != _own_origin(config)


def _mapped_hosts(config: Config) -> str:
    """A CSP source for every mapped vendor host: each is a subdomain of the public host."""
    scheme, host, port = config.public
    return f"{scheme}://*.{host}" + (f":{port}" if port else "")


def _own_origin(config: Config) -> str:
    """The proxy's own origin as a browser writes it in Origin: no default port."""
    scheme, host, port = config.public
    default = {"http": 80, "https": 443}.get(scheme)
    return f"{scheme}://{host}" + (f":{port}" if port and port != default else "")


async def login_submit(request: web.Request) -> web.StreamResponse:
    svc = request.app[SERVICES]
    if _posted_from_elsewhere(request, svc.config):
        log.warning("login_refused", reason="cross_origin")
        return message_page(
            request, "foreign_form", links=[{"href": "/login", "text": UI["sign_in"]}]
        )
    if request.content_length is None or request.content_length > MAX_LOGIN_BODY:
        return message_page(request, "bad_request")
    try:
        # A sign-in form is a few hundred bytes: a client that trickles it is holding a slot open.
        async with asyncio.timeout(LOGIN_BODY_TIMEOUT_S):
            form = await request.post()
    except TimeoutError:
        refused = message_page(request, "bad_request")
        refused.force_close()
        return refused
    except (ValueError, LookupError, HttpProcessingError, web.RequestPayloadError):
        # A body aiohttp cannot read as a form (a charset nobody knows, multipart without its
        # boundary or with a garbled part head, a coding it is not in) is the client's mistake,
        # not the proxy's: 400, and no internal_error logged.
        return message_page(request, "bad_request")
    # Cards print the number in groups ("2 9999 00042 4242"): spaces typed with it mean nothing.
    username = "".join(str(form.get("username", "")).split())
    password = str(form.get("password", ""))
    url = str(form.get("url", ""))
    request[LOGIN_URL] = url
    sent_token = str(form.get("csrf", ""))
    cookie_token = request.cookies.get(CSRF_COOKIE, "")
    if not cookie_token or not hmac.compare_digest(sent_token.encode(), cookie_token.encode()):
        return message_page(
            request, "csrf", links=[{"href": login_link(request), "text": UI["sign_in"]}]
        )
    request[SIGN_IN_POST] = True
    if not username or not password:
        # Nothing to look up or check: say which field is empty; no try is counted.
        missing = MESSAGES["no_card" if not username else "no_pin"]
        return _login_page(
            request, url=url, problem=missing, username=username, status=missing.status
        )
    try:
        return await _sign_in(request, svc, username, password, url)
    finally:
        for settle in svc.hooks.login_settled:
            await settle(request)


async def _sign_in(
    request: web.Request, svc: Services, username: str, password: str, url: str
) -> web.StreamResponse:
    """The part of a sign-in the login gates hold a place for (`Hooks.login_settled`)."""
    for gate in svc.hooks.login_gates:
        gated = await gate(request, username)
        if gated is not None:
            # A new sign-in token: this post, replayed from history, is refused (`_token`).
            renew_sign_in_token(request, gated)
            return gated
    try:
        patron = await svc.directory.authenticate(username, password)
    except BadCredentials:
        return await _login_failed(request, "bad_credentials", username, url)
    except NotEligible:
        return await _login_failed(request, "not_eligible", username, url)
    except PinExpired:
        return await _login_failed(request, "pin_expired", username, url)
    except PinMustChange:
        return await _login_failed(request, "pin_must_change", username, url)
    except DirectoryUnavailable:
        request[RENEW_TOKEN] = True  # the card and PIN may be right: no replay (`_token`)
        return await _login_failed(request, "directory_unavailable", username, url)
    finally:
        del password
    for admits in svc.hooks.login_admits:
        not_admitted = await admits(request, username)
        if not_admitted is not None:
            # As a gate's refusal; the patron's open session (if any) is left as it was.
            renew_sign_in_token(request, not_admitted)
            return not_admitted
    # Never carry a pre-login id into the new session (fixation), nor one a page tossed in.
    old = session_ids(request)
    await end_sessions(svc, old)
    session = await svc.sessions.start(
        patron_key=patron.key, databases=patron.databases, rules=patron.rules
    )
    svc.metrics.logins.labels("success").inc()
    for hook in svc.hooks.login_outcome:
        hook("success")
    log.info("login", outcome="success")
    resp = _redirect_to_start(request, url, pin_notice(patron, session.id))
    if len(old) > 1:
        clear_copies(resp, request, svc.config)  # before the new cookie, which aiohttp adds last
    _set_session_cookie(resp, svc.config, session.id)
    # The CSRF cookie stays: a sign-in form open in another tab carries the same token, and
    # deleting it made that tab's sign-in fail with "Please try again".
    raise resp


def _elsewhere(url: str, hosts: HostMap) -> bool:
    """Whether a starting point names a web address on a host that is neither the proxy's nor a
    database's (`is_third_party`): the menu then says the address is not one of the library's
    databases, rather than leaving the patron to look for it. (A database's address that
    `safe_target` would not take, too long say, is not called a stranger.)"""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    host = (parts.hostname or "").rstrip(".")
    return parts.scheme.lower() in ("http", "https") and is_third_party(hosts, host)


async def _login_failed(
    request: web.Request, outcome: str, username: str, url: str
) -> web.Response:
    svc = request.app[SERVICES]
    svc.metrics.logins.labels(outcome).inc()
    log.info("login", outcome=outcome)
    for failed in svc.hooks.login_failed:
        await failed(request, username, outcome)
    for note in svc.hooks.login_outcome:
        note(outcome)
    m = shown(outcome, {"contact": svc.config.library.contact})
    resp = _login_page(request, url=url, problem=m, username=username, status=m.status)
    if m.status == 503:
        resp.headers["Retry-After"] = "60"
    return resp


def _forget_page_headers(resp: web.StreamResponse, config: Config, urls: list[str]) -> None:
    """A page that loads FORGET_PATH from vendor hosts as images (sign-out, the sign-in page
    after a session ended): its CSP lets images come from the proxy's mapped hosts (all
    subdomains of the public host)."""
    if not urls:
        return
    csp = resp.headers.get("Content-Security-Policy", OWN_PAGE_HEADERS["Content-Security-Policy"])
    resp.headers["Content-Security-Policy"] = re.sub(
        r"img-src [^;]*", lambda m: f"{m.group(0)} {_mapped_hosts(config)}", csp, count=1
    )


# Fetch metadata request headers: a browser that sends any of them sends Sec-Fetch-Site.
FETCH_METADATA = ("Sec-Fetch-Site", "Sec-Fetch-Mode", "Sec-Fetch-Dest", "Sec-Fetch-User")


def _patrons_own_sign_out(request: web.Request, config: Config) -> bool:
    """Whether a GET /logout is the patron's own action, as the browser tells it.

    Vendor pages are same-site with the proxy's own, so an `<img>`, a frame or a script on one
    could otherwise sign the patron out; and a navigation a vendor page's script starts on the
    patron's first click anywhere on it comes with the same `Sec-Fetch-User: ?1` as a link the
    patron chose. The patron's own: an address typed or a bookmark (`Sec-Fetch-Site: none`), the
    proxy's own pages (same-origin), or a link clicked on a page that is not the proxy's, such as
    the library's web site: a document navigation with user activation whose Referer names
    another host than the proxy's (a vendor page's, on a mapped host, or hidden by its
    Referrer-Policy, does not count). A client without fetch metadata (an older browser, curl)
    is taken at its word, as before. Everyone else gets the button, one press away."""
    headers = request.headers
    if not any(name in headers for name in FETCH_METADATA):
        return True
    if headers.get("Sec-Fetch-Site") in ("none", "same-origin"):
        return True
    if headers.get("Sec-Fetch-Dest") != "document" or headers.get("Sec-Fetch-User") != "?1":
        return False
    referer = urlsplit(headers.get("Referer", "")).hostname or ""
    public = config.public[1]
    return bool(referer) and referer != public and not referer.endswith("." + public)


async def logout(request: web.Request) -> web.StreamResponse:
    """Signing out: the session is deleted, the browser drops its cookie, and the page asks the
    browser to forget what the vendor pages of this session stored in it (a shared computer's
    next user would otherwise find the last one's pages in the cache and a database's "recent
    searches" in its local storage).

    Only when the patron asked: a request a page made in the patron's name (`logout_refused`)
    ends nothing and gets a page saying the patron is still signed in, with the sign-out
    button."""
    svc = request.app[SERVICES]
    # Every session the browser names ends: with a tossed cookie beside the patron's, ending
    # only one could leave the patron's session alive after "You are signed out".
    ids = session_ids(request)
    if request.method == "POST":
        foreign = _posted_from_elsewhere(request, svc.config)
    else:
        foreign = not _patrons_own_sign_out(request, svc.config)
    if foreign and ids:
        live = [s for s in [await svc.sessions.load(sid) for sid in ids] if s is not None]
        if live:
            log.warning("logout_refused", reason="not_the_patrons_own", method=request.method)
            # `?confirm`: the proxy's own "Sign out" link on a page it shows on a vendor host
            # (which cannot sign out from there) leads to the button without the alarm.
            asked = "logout_confirm" if "confirm" in request.query else "logout_not_asked"
            return message_page(request, asked, session=live[0])
        # No session alive to keep: the ordinary answer below ends nothing.
    forget: list[str] = []
    hosts: list[str] = []
    for sid in ids:
        svc.signer.forget(storage_key(sid))
    if ids:
        try:
            for sid in ids:
                session = await svc.sessions.load(sid)
                if session is not None:
                    hosts += session.hosts
                else:
                    # Ended already (expired while the page stayed open): its hosts died with
                    # it, so every configured host's are asked to go.
                    hosts += configured_hosts(svc.config)
            forget = forget_urls(svc, hosts)
            await end_sessions(svc, ids)
        except StoreUnavailable as exc:
            # The session record may outlive this: the browser must still drop its cookie, or on
            # a shared computer the next person is signed in as this patron once the store is back.
            log.warning("logout_unconfirmed", dependency="store", reason=exc.reason)
            # The session's hosts cannot be read: the browser forgets every configured host's.
            forget = forget_urls(svc, configured_hosts(svc.config))
            resp = message_page(request, "logout_unconfirmed", links=[], forget=forget)
            _forget_page_headers(resp, svc.config, forget)
            _clear_session_cookie(resp, svc.config, request, several=len(ids) > 1)
            return resp
        log.info("logout")
    resp = render(
        request,
        "message.html",
        message=Message(
            200, UI["signed_out_heading"], UI["signed_out_text"], UI["signed_out_action"]
        ),
        links=[{"href": "/login", "text": UI["sign_in_again"]}],
        signed_in=False,
        forget=forget,
    )
    _forget_page_headers(resp, svc.config, forget)
    _clear_session_cookie(resp, svc.config, request, several=len(ids) > 1)
    return resp


async def _require_session(request: web.Request) -> Session:
    svc = request.app[SERVICES]
    session = await svc.sessions.load(_session_cookie(request))
    if session is None:
        raise web.HTTPFound("/login")
    return session


# Combining marks as the menu's script strips them (menu.js `fold`): the same characters both ways.
_MARKS = re.compile("[\u0300-\u036f]")


def _folded(text: str) -> str:
    """Text as the menu files and filters it, here and in menu.js alike: without case and
    without accents, by NFKD and then dropping the combining marks ("Érudit" is filed under E,
    after "Encyclopedia", and "erudit" finds it; a letter of its own, Ø or Æ, stays itself).
    Lower-casing leaves two letters whose capitals fold otherwise: ß (STRASSE) and the final
    sigma (capital sigma at a word's end), written as ss and the medial sigma."""
    folded = _MARKS.sub("", unicodedata.normalize("NFKD", text)).lower()
    return folded.replace("\u00df", "ss").replace("\u03c2", "\u03c3")


async def menu(request: web.Request) -> web.StreamResponse:
    svc = request.app[SERVICES]
    session = await _require_session(request)
    await svc.sessions.touch(session)  # looking at the menu is using the session
    q = request.query.get("q", "").strip()[:100]
    # After sign-in from a link to an address that is none of the library's databases.
    asked = request.cookies.get(NOTICE_COOKIE)
    notice = MESSAGES[asked] if asked in NOTICES else None
    notice_link: dict[str, str] | None = None
    notice_also: Message | None = None
    max_line = _max_line(svc.config)
    warned = _pin_message(asked, session, svc.config.library.contact)
    if warned is not None:
        notice, notice_also = warned
        # The starting point the sign-in was for, as the sign-in itself would have gone there.
        start = safe_target(request.query.get("url", ""), svc.hosts, max_line=max_line)
        if start is not None:
            notice_link = {"href": start, "text": UI["continue_to_start"]}
    # Every database is on the page; the ones the filter leaves out are `hidden`, which works
    # without JavaScript, and menu.js can show them again as the patron edits the filter.
    groups: dict[str, dict[str, Any]] = {}
    shown_count = total = 0
    library_ok = library_rule_holds(session.rules, svc.eligibility)
    for v in sorted(svc.config.vendors, key=lambda v: _folded(v.title)):
        mark = svc.eligibility.get(v.id, "")
        if not library_ok or not may_use(session.databases, session.rules, v, mark):
            if notice is None and (not library_ok or rules_changed(session.rules, v, mark)):
                # Databases decided under rules a reload has changed wait for a new sign-in.
                notice = MESSAGES["rules_changed_menu"]
                again = _public(svc.config, f"/login?{AGAIN}=1")
                notice_link = {"href": again, "text": UI["sign_in_again"]}
            continue
        text = _folded(f"{v.title} {v.description}")
        show = _folded(q) in text
        letter = _folded(v.title)[:1].upper()
        group = groups.setdefault(
            letter if letter.isalpha() else "#",
            {"letter": letter if letter.isalpha() else "#", "items": [], "shown": False},
        )
        href = safe_target(v.start, svc.hosts, max_line=max_line) or "#"
        group["items"].append(
            {
                "title": v.title,
                "description": v.description,
                "href": href,
                "text": text,
                "shown": show,
            }
        )
        group["shown"] = group["shown"] or show
        total += 1
        shown_count += show
    idle_s = svc.config.session.idle_timeout_s
    warn_s = min(120, idle_s // 2)  # WCAG 2.2.1 asks for at least 20 s to react
    lifetime = duration(svc.sessions.lifetime_s)
    left_s = int(_time_left(svc, session)["left_s"])
    # What the warning says without JavaScript, or until menu.js words the `left_s` the server
    # reports when the warning opens: the warning's length, or less if less is left already.
    said = duration(max(1, min(warn_s, left_s)))
    page = render(
        request,
        "menu.html",
        notice=notice,
        notice_also=notice_also,
        notice_link=notice_link,
        groups=[groups[k] for k in sorted(groups)],
        q=q,
        shown=shown_count,
        total=total,
        csrf=session.csrf,
        signed_in=True,
        menu_intro=UI["menu_intro"] + " " + fill(UI["menu_lifetime"], {"lifetime": lifetime}),
        expiry_text=fill(
            UI["expiry_warning"], {"duration": duration(idle_s), "lifetime": lifetime}
        ),
        warn_s=warn_s,
        left_s=left_s,
        units=json.dumps(DURATION_WORDS),
        timeout_text=fill(UI["timeout_text"], {"duration": said}),
        timeout_text_template=fill(UI["timeout_text"], {"duration": "{duration}"}),
        timeout_final=fill(UI["timeout_final"], {"duration": said, "lifetime": lifetime}),
        timeout_final_template=fill(
            UI["timeout_final"], {"duration": "{duration}", "lifetime": lifetime}
        ),
    )
    if asked is not None:
        page.del_cookie(NOTICE_COOKIE, path="/menu")  # said once
    return page


def _time_left(svc: Services, session: Session) -> dict[str, Any]:
    now = time.time()
    idle_left = svc.sessions.idle_timeout_s - (now - session.last_seen)
    life_left = svc.sessions.lifetime_s - (now - session.created)
    return {
        "signed_in": True,
        "left_s": max(0, int(min(idle_left, life_left))),
        # Past this point only the absolute lifetime is left, which no activity extends.
        "extendable": idle_left < life_left,
    }


async def session_time(request: web.Request) -> web.StreamResponse:
    """GET: how long the session has left (no effect). POST: count as use, then the same.

    For the menu's time-out warning (menu.js); the POST needs the session's CSRF token. Only
    401 means the session has ended; a store outage is a JSON 503 with Retry-After, so the menu
    says the session could not be checked rather than that it ended.
    """
    svc = request.app[SERVICES]
    try:
        session = await svc.sessions.load(_session_cookie(request))
        if session is None:
            return web.json_response(
                {"signed_in": False}, status=401, headers={"WWW-Authenticate": FORM_CHALLENGE}
            )
        if request.method == "POST":
            sent = request.headers.get("X-CSRF-Token", "")
            if not hmac.compare_digest(sent.encode(), session.csrf.encode()):
                return web.json_response({"signed_in": True, "error": "csrf"}, status=403)
            await svc.sessions.touch(session, min_interval_s=0)
    except StoreUnavailable as exc:
        log.warning("store_unavailable", dependency="store", reason=exc.reason)
        return web.json_response(
            {"error": "store_unavailable"}, status=503, headers={"Retry-After": "60"}
        )
    return web.json_response(_time_left(svc, session))


async def privacy_page(request: web.Request) -> web.StreamResponse:
    svc = request.app[SERVICES]
    rows = []
    today = dt.date.today()
    for v in sorted(svc.config.vendors, key=lambda v: v.title.lower()):
        adapter = svc.upstream.adapters[v.id]
        c = v.contract
        rows.append(
            {
                "title": v.title,
                "disclosure": vendor_disclosure(adapter.disclosure(), v, svc.config, today=today),
                "policy": c.privacy_policy_url,
                "reviewed": c.reviewed.isoformat() if c.reviewed else "",
                "expires": c.expires.isoformat() if c.expires else "",
            }
        )
    try:
        session = await svc.sessions.load(_session_cookie(request))
    except StoreUnavailable:
        session = None  # the privacy notice needs no session; show it signed out
    return render(
        request,
        "privacy.html",
        vendors=rows,
        exceptions=any(has_direct_parts(v) for v in svc.config.vendors),
        signed_in=session is not None,
        csrf=session.csrf if session else "",
    )


async def root(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/menu")


async def static_file(request: web.Request) -> web.StreamResponse:
    svc = request.app[SERVICES]
    name = request.match_info["name"]
    if "/" in name or name.startswith("."):
        raise web.HTTPNotFound()
    for folder in (svc.config.resolve("web/static"), WEB_DIR / "static"):
        path = folder / name
        if path.is_file():
            resp = web.FileResponse(path)
            resp.headers["Cache-Control"] = "public, max-age=86400"
            return resp
    raise web.HTTPNotFound()
