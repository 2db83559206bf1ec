"""Every string a patron reads, in one place, ready for translation.

Each page problem has a status, a title, what happened, and what the patron can do. None of them
says whether a card number exists.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Message:
    status: int
    title: str
    text: str
    action: str
    # The login form field the problem is about ("password"), so the page can mark that field
    # invalid and put the cursor there; empty when no single field is at fault.
    field: str = ""


MESSAGES: dict[str, Message] = {
    "bad_credentials": Message(
        401,
        "We couldn't sign you in",
        "The card number or PIN is not right.",
        "Check the 14-digit number on the back of your library card and your PIN, then try again. "
        "If you have forgotten your PIN, the library can reset it.",
        field="password",
    ),
    "no_card": Message(
        401,
        "Type your card number",
        "The card number was empty.",
        "Type the 14-digit number under the barcode on the back of your library card, and your "
        "PIN, then sign in.",
        field="username",
    ),
    "no_pin": Message(
        401,
        "Type your PIN",
        "The PIN was empty.",
        "Type your PIN, then sign in. If you have forgotten your PIN, the library can reset it.",
        field="password",
    ),
    "not_eligible": Message(
        403,
        "Your card can't be used for online databases right now",
        "Your card is recognised, but it is not able to use remote access at the moment — for "
        "example because it has expired or needs attention at the desk.",
        "Please contact the library; staff can check your card and renew it.",
    ),
    # Said only after the right PIN (the directory's password policy answers so only then).
    "pin_expired": Message(
        403,
        "Your PIN has expired",
        "Your card number and PIN are right, but the PIN has passed the date the library set for "
        "changing it, so it can't be used to sign in.",
        "Ask the library to reset your PIN, then sign in with the new one. {contact}",
    ),
    # Told once, on the menu, after a sign-in whose bind the directory's password policy warned
    # of (proxy.ldap_policy): the patron is signed in; this is about the next sign-ins.
    "pin_grace": Message(
        200,
        "Your PIN has expired",
        "You are signed in, but your PIN has passed the date the library set for changing it. "
        "It will let you sign in {grace_times}; after that it stops working until the "
        "library resets it.",
        "Ask the library to change your PIN. {contact}",
    ),
    "pin_grace_last": Message(
        200,
        "Your PIN has expired",
        "You are signed in, but your PIN has passed the date the library set for changing it, "
        "and this was the last sign-in it allows: next time it will not work until the library "
        "resets it.",
        "Ask the library to change your PIN. {contact}",
    ),
    "pin_expiring": Message(
        200,
        "Your PIN expires soon",
        "Your PIN stops working in {expires_in}, the date the library set for changing it.",
        "Ask the library to change it before then. {contact}",
    ),
    "pin_must_change": Message(
        403,
        "Change your PIN before you sign in",
        "Your card number and PIN are right, but this PIN was set for you to change before it "
        "can be used, so it can't be used to sign in yet.",
        "Change your PIN the way the library tells you to, then sign in with the new one. If "
        "you don't know how, ask the library. {contact}",
    ),
    "directory_unavailable": Message(
        503,
        "Sign-in is unavailable",
        "The library's login service is unavailable right now. This is not a problem with your card.",
        "Please try again in a few minutes.",
    ),
    "not_included": Message(
        403,
        "This database isn't included with your card",
        "The database you followed a link to is not part of the databases your card gives access to.",
        "Choose another database from the list, or ask the library about access.",
    ),
    "rules_changed": Message(
        403,
        "Sign in again to use this database",
        "The library has changed who may use this database since you signed in, so your card "
        "needs to be checked again.",
        "Sign in again: it takes you straight to the database if your card gives access to it.",
    ),
    "rules_changed_menu": Message(
        200,
        "Some databases need you to sign in again",
        "The library has changed who may use some databases since you signed in, so they are "
        "not listed until your card is checked again.",
        "Sign in again to see every database your card gives access to.",
    ),
    "not_configured": Message(
        404,
        "This address isn't set up at the library",
        "This web address is not one of the library's databases, so nothing was opened.",
        "Start from the library's list of databases.",
    ),
    "link_too_long": Message(
        414,
        "This link is too long to open",
        "The database address in the link is longer than a web browser can ask for, so it was "
        "not opened.",
        "Open the database from the library's list and search there.",
    ),
    "not_found": Message(
        404,
        "There is no page at this address",
        "This address is not a page of the library's access service. The link may be mistyped "
        "or out of date.",
        "Start from your list of databases; if you are not signed in yet, you will be asked to "
        "sign in with your library card first.",
    ),
    "method_not_allowed": Message(
        405,
        "That page can't be used this way",
        "This page of the library's access service does not accept that kind of request. Your "
        "library card is fine.",
        "Start from your list of databases; if you are not signed in yet, you will be asked to "
        "sign in with your library card first.",
    ),
    "vendor_unavailable": Message(
        502,
        "The database isn't responding",
        "{database} could not be reached just now. Your library card is fine.",
        "Please try again in a few minutes, or choose another database.",
    ),
    "vendor_timeout": Message(
        504,
        "The database is taking too long",
        "{database} did not answer in time. Your library card is fine.",
        "Please try again in a few minutes, or choose another database.",
    ),
    "vendor_account_refused": Message(
        503,
        "The database can't be opened right now",
        "{database} can't be reached with the library's account right now. Your library card is "
        "fine.",
        "Please try again later. If it keeps happening, please tell the library, so staff can "
        "sort out the library's account with the database.",
    ),
    "vendor_busy": Message(
        503,
        "The database is busy",
        "Many people at the library are using {database} right now, and it is answering slowly, so "
        "your page had to wait too long. Your library card is fine.",
        "Please try again in a minute, or choose another database.",
    ),
    "busy": Message(
        503,
        "The service is busy",
        "The library's access service is answering as many requests as it can right now, so "
        "your page had to wait too long. Your library card is fine.",
        "Please try again in a minute.",
    ),
    "store_unavailable": Message(
        503,
        "The service is briefly unavailable",
        "The library's access service cannot check your sign-in right now, so nothing was opened.",
        "Please try again in a few minutes.",
    ),
    "logout_unconfirmed": Message(
        503,
        "Sign-out could not be confirmed",
        "This browser no longer holds your session, but the library's access service could not "
        "confirm that it deleted the session on its side, because that part of the service is "
        "briefly unavailable.",
        "Close the browser now, all of its windows, especially on a shared computer. The session "
        "also ends by itself after a short time without use.",
    ),
    "logout_confirm": Message(
        200,
        "Sign out?",
        "Signing out ends your session and asks this browser to forget what the databases "
        "stored in it.",
        "Press “Sign out” at the top of this page. Otherwise, go back to your databases.",
    ),
    "logout_not_asked": Message(
        200,
        "You are still signed in",
        "Something other than you asked to sign you out — a database page can do that without "
        "you seeing it — so nothing was ended. Your session and the databases you have open are "
        "as they were.",
        "If you do want to sign out, press “Sign out” at the top of this page. Otherwise, go back "
        "to your databases.",
    ),
    "session_expired": Message(
        401,
        "Your session has ended",
        "For your privacy, a session ends after {idle_for} without use, and {lifetime} after "
        "signing in even while it is in use, as well as when you sign out.",
        "Sign in again to continue.",
    ),
    "suspended": Message(
        429,
        "This session has been paused",
        "This session made more requests or downloads than the library's agreements with database "
        "vendors allow in a short time. Vendors can cut off the whole library's access when that "
        "happens, so the session was paused. The vendor was not told who you are.",
        "If you were doing ordinary research, please contact the library and we will help. "
        "{contact}",
    ),
    "too_many_attempts": Message(
        429,
        "Too many sign-in attempts",
        "There have been too many unsuccessful sign-in attempts. For your security, sign-in is "
        "paused for a while.",
        "Please try again in {retry_in}, or contact the library for help.",
    ),
    "sign_in_busy": Message(
        503,
        "Sign-in is busy",
        "Many sign-ins for this card or from your network are being checked at this moment.",
        "Please try again in a few seconds.",
    ),
    "too_many_sign_ins": Message(
        429,
        "Too many sign-ins with this card",
        "This card has been used to sign in more times in a short while than the library allows, "
        "so this sign-in was not completed. Pages you already have open through the library "
        "keep working.",
        "Please try again in {retry_in}. If this card is shared by the library's own computers, "
        "or you did not sign in this often, contact the library.",
    ),
    "bad_request": Message(
        400,
        "Something went wrong with that request",
        "The request could not be understood.",
        "Go back and try again, or start from the list of databases.",
    ),
    "session_conflict": Message(
        400,
        "Please sign in again",
        "Your browser sent this library's sign-in cookie twice, with different values. A "
        "database page you opened may have tried to put you in someone else's session, so for "
        "your privacy every session it named has been ended.",
        "Sign in again. If this keeps happening, tell the library which database you were using.",
    ),
    "foreign_form": Message(
        403,
        "This form did not come from the library",
        "A page from another address tried to send a sign-in form to the library's proxy in "
        "your name, so nothing was done.",
        "If you meant to sign in, open the library's sign-in page yourself and sign in there.",
    ),
    "csrf": Message(
        400,
        "Please try again",
        "The sign-in form had expired or your browser did not send it back complete. Cookies must "
        "be allowed for the library's proxy address.",
        "Reload the page and sign in again.",
    ),
    "length_required": Message(
        411,
        "That form or upload could not be sent",
        "Your browser sent it without saying how large it is, so it could not be checked against "
        "what this database accepts through the library. Nothing was sent to the database.",
        "Go back and try again. If it keeps happening, try another browser or contact the library.",
    ),
    "too_large": Message(
        413,
        "That upload is too large",
        "The file or form you sent is larger than this database accepts through the library.",
        "Try a smaller file.",
    ),
    "internal": Message(
        500,
        "Something went wrong",
        "The library's access service had a problem with this request.",
        "Please try again. If it keeps happening, contact the library.",
    ),
}


# What a message shows when the page that raised it could not fill a blank in (never a KeyError
# on an error page).
FORMAT_DEFAULTS: dict[str, str] = {
    "database": "The database",
    "retry_in": "a few minutes",
    "idle_for": "a period",
    "lifetime": "a fixed time",
}

# How a number of each unit reads, one and many. menu.js words the time left in the same forms
# (the menu hands them over in data-units), so the wording stays in this file.
DURATION_WORDS: dict[str, tuple[str, str]] = {
    "hour": ("1 hour", "{n} hours"),
    "minute": ("1 minute", "{n} minutes"),
    "second": ("1 second", "{n} seconds"),
}


def _count(unit: str, n: Any) -> str:
    one, many = DURATION_WORDS[unit]
    return one if n == 1 else many.format(n=n)


def until(seconds: float) -> str:
    """How long is left before a date, rounded down (never more than is left): 3 days, 1 day,
    5 hours, less than an hour."""
    s = max(0, int(seconds))
    if s >= 86400:
        return "1 day" if s < 2 * 86400 else f"{s // 86400} days"
    if s >= 3600:
        return _count("hour", s // 3600)
    return "less than an hour"


def minutes(n: Any) -> str:
    """A number of minutes as a patron reads it: 1 minute, 5 minutes."""
    return _count("minute", n)


def duration(seconds: float) -> str:
    """A configured length of time as a patron reads it, exactly: 45 seconds, 90 seconds,
    1 minute, 30 minutes, 2 hours.

    Never rounded: a session said to last "1 minute" that lasts 90 s is a false statement about
    how long it is kept. Whole hours read as hours, whole minutes as minutes, anything else
    (under a minute, or not a whole number of minutes) as seconds."""
    s = max(0, math.ceil(seconds))
    if s >= 3600 and s % 3600 == 0:
        return _count("hour", s // 3600)
    if s >= 60 and s % 60 == 0:
        return _count("minute", s // 60)
    return _count("second", s)


# Blanks worded from a number the caller gives (`retry_minutes=1` fills `{retry_in}` with
# "1 minute"), so callers pass numbers and the wording, plural included, stays in this file.
WORDED: dict[str, tuple[str, Callable[[Any], str]]] = {
    "retry_in": ("retry_minutes", minutes),
    "grace_times": ("grace_left", lambda n: "1 more time" if n == 1 else f"{n} more times"),
    "expires_in": ("expires_in_s", lambda s: f"about {until(s)}" if s >= 3600 else until(s)),
    "idle_for": ("idle_s", duration),
    "lifetime": ("lifetime_s", duration),
}


class _Blanks(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        if key in WORDED:
            source, word = WORDED[key]
            if source in self:
                return word(self[source])
        return FORMAT_DEFAULTS.get(key, "")


def fill(template: str, values: Mapping[str, Any]) -> str:
    """`template` with its `{blanks}` filled from `values`, falling back to FORMAT_DEFAULTS."""
    return template.format_map(_Blanks(values))


def shown(kind: str, values: Mapping[str, Any]) -> Message:
    """The message `kind` as a patron sees it, blanks filled."""
    m = MESSAGES[kind]
    return Message(
        m.status, fill(m.title, values), fill(m.text, values), fill(m.action, values), m.field
    )


LANG = "en"

# Everything else on the pages. `{library}`, `{contact}` and friends are filled from [library].
UI: dict[str, str] = {
    "skip": "Skip to main content",
    "error_prefix": "Error:",
    # header and footer
    "home_label": "{library} home — your databases",
    "sign_out": "Sign out",
    "help": "Need help?",
    "library_help_link": "Library help page",
    "privacy_link": "How we protect your privacy",
    "footer_note": "This is the library's own sign-in service. It loads nothing from other companies.",
    "staff_code": "Code for library staff:",
    # login
    "login_title": "Sign in",
    "login_heading": "Sign in to use the library's online databases",
    "login_intro": "Use your {library} card to read magazines, newspapers, encyclopedias and "
    "research databases from home.",
    "card_label": "Library card number",
    "card_hint": "The 14-digit number under the barcode on the back of your library card.",
    "pin_label": "PIN",
    "pin_hint": "The PIN (password) that goes with your card. It goes only to the library, never "
    "to a database.",
    "sign_in": "Sign in",
    "problem_heading": "There is a problem",
    "pin_error": "Check your card number, then type your PIN again.",
    "fix_pin_link": "Type your PIN again",
    "card_error": "Type the number under the barcode on the back of your card.",
    "fix_card_link": "Type your card number",
    "privacy_promise": "We tell the databases only that you are a library member — never who you "
    "are — and keep no record of what you read or search.",
    "login_help_heading": "Forgotten your PIN or don't have a card?",
    "login_help": "The library can give you a card or reset your PIN.",
    # menu
    "menu_title": "Your databases",
    "menu_heading": "Your databases",
    "continue_to_start": "Continue to the page you asked for",
    "menu_intro": "Choose a database to open it. You stay signed in while you use it.",
    # Said after menu_intro (a separate text, so a branding override of menu.html written for
    # `ui.menu_intro` alone shows no unfilled blank).
    "menu_lifetime": "Every session ends at the latest {lifetime} after you sign in.",
    "filter_label": "Find a database",
    "filter_hint": "Type part of a name or subject, for example “news”.",
    "filter_button": "Find",
    "filter_clear": "Show all databases",
    "az_label": "Databases A to Z",
    "count": "{shown} of {total} databases shown.",
    "no_match": "No database matches “{q}”.",
    "no_databases": "No databases are available with your card. Please contact the library.",
    "expiry_warning": "For your privacy, this session ends after {duration} without use, and "
    "in any case {lifetime} after you signed in, even while you are using a database.",
    # time-out warning (WCAG 2.2.1: the patron can extend the session)
    "timeout_heading": "Are you still there?",
    "timeout_text": "For your privacy, your session will end in about {duration} because it "
    "has not been used.",
    "timeout_final": "Your session will end in about {duration} and cannot be extended "
    "further: every session ends {lifetime} after signing in. You can sign in again afterwards.",
    "timeout_extend": "Stay signed in",
    "timeout_extended": "You are still signed in.",
    "timeout_unchecked": "Your session could not be checked just now, so it may not have been "
    "extended. We will try again in a moment, or you can press the button again.",
    "timeout_ended": "Your session has ended. Sign in again to carry on.",
    # logout
    "signed_out_title": "Signed out",
    "signed_out_heading": "You are signed out",
    "signed_out_text": "Your session has ended and everything the library's proxy held for it has "
    "been deleted. This browser has also been asked to forget what the databases you used stored "
    "in it (saved pages, recent searches).",
    "signed_out_action": "On a shared computer, close the browser too.",
    "sign_in_again": "Sign in again",
    "back_to_menu": "Back to your databases",
    "try_again": "Try again",
    "what_you_can_do": "What you can do",
    # privacy
    "privacy_title": "Privacy",
    "privacy_heading": "What each database learns about you",
    "privacy_p1": "{library} signs you in here, at the library, and then fetches database pages "
    "for you. Databases see the library's address, not yours, and never your name, card number, "
    "e-mail or PIN.",
    "privacy_p2": "The library keeps no record of which databases you use or what you search. "
    "Your session is deleted when you sign out or stop using it. Signing out also asks this "
    "browser to forget the pages and saved data of the databases you used, which matters on a "
    "shared computer.",
    # Added to privacy_p1 when some row below says otherwise (a vendor page that loads other
    # companies' parts, or a vendor address reached directly), so the opening stays true.
    "privacy_exceptions": "Some databases below are exceptions: parts of them are reached "
    "straight from your browser, so whoever runs those parts sees your address. Their rows say "
    "which.",
    "privacy_p3": "Under Connecticut law (C.G.S. § 11-25(b)) library records that identify you "
    "are confidential.",
    "privacy_caption": "What each database receives",
    "col_database": "Database",
    "col_receives": "What it receives",
    "col_policy": "Vendor's privacy policy",
    "col_agreement": "Agreement reviewed / ends",
    "policy_link": "Privacy policy",
    "policy_link_of": "of {title}",
    "none": "—",
}


# What the /privacy page says each database receives (proxy.web.disclosure): the sentence for the
# adapter kind, then any of the caveats the vendor's configuration makes true.
DISCLOSURES: dict[str, str] = {
    "ip": "Only that the request comes through your library's proxy. Nothing about you is sent: "
    "the vendor recognises the library's address, not yours.",
    "assertion": "Your library's name and that you are a valid patron; nothing else.",
    "assertion_pseudonymous": "Your library's name and that you are a valid patron, plus a code "
    "that lets this vendor recognise you on return visits (for saved searches and folders). The "
    "code is unique to this vendor and cannot be traced to your card or name.",
    "referer": "Only a link address agreed with the library that shows the visit comes from the "
    "library; nothing about you is sent.",
    "shared-login": "Nothing about you. The library signs in with one shared library account, so "
    "the vendor sees every patron as the same library user.",
    # Caveats. The tracker shield is off: the page's scripts and images from other companies are
    # fetched by the patron's own browser.
    "third_party": "But its pages also load parts from other companies' websites directly from "
    "your browser, so those companies see your address.",
    # never_proxy: the vendor's own hosts, named (they are the vendor's, not the patron's).
    "never_proxy": "But some of its addresses are opened directly from your browser, not through "
    "the library, so the vendor sees your address there: {hosts}.",
    "never_proxy_any": "any address ending in {domain}",
    # `permissions`: what the vendor's pages may ask the patron for (proxy/permissions.py).
    "permissions": "Its pages may ask your permission to use your {features}; if you allow it, "
    "the vendor gets it, and your browser may remember your answer after you sign out.",
    "feature_geolocation": "location",
    "feature_camera": "camera",
    "feature_microphone": "microphone",
    "feature_display-capture": "screen (to share it)",
    "feature_clipboard-read": "clipboard (to read what you copied)",
    "feature_screen-wake-lock": "screen (to keep it on)",
    "feature_midi": "music devices (MIDI)",
    "feature_xr-spatial-tracking": "virtual-reality headset",
    # A shared account whose history settings the library has not confirmed off (the compliance
    # check shared_account.history does not pass).
    "shared_history": "The library has not confirmed that this account keeps no history, so "
    "other patrons using the library's account may see the searches and saved items the vendor "
    "keeps for that account.",
}
