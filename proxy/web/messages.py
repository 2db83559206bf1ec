"""Every string a patron reads, in one place, ready for translation.

Each page problem has a status, a title, what happened, and what the patron can do. None of them
says whether a card number exists.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Message:
    status: int
    title: str
    text: str
    action: str


MESSAGES: dict[str, Message] = {
    "bad_credentials": Message(
        401,
        "We couldn't sign you in",
        "The card number or PIN is not right.",
        "Check the 14-digit number on the back of your library card and your PIN, then try again. "
        "If you have forgotten your PIN, the library can reset it.",
    ),
    "not_eligible": Message(
        403,
        "Your card can't be used for online databases right now",
        "Your card is recognised, but it is not able to use remote access at the moment — for "
        "example because it has expired or needs attention at the desk.",
        "Please contact the library; staff can check your card and renew it.",
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
    "not_configured": Message(
        404,
        "This address isn't set up at the library",
        "This web address is not one of the library's databases, so nothing was opened.",
        "Start from the library's list of databases.",
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
    "store_unavailable": Message(
        503,
        "The service is briefly unavailable",
        "The library's access service cannot check your sign-in right now, so nothing was opened.",
        "Please try again in a few minutes.",
    ),
    "session_expired": Message(
        401,
        "Your session has ended",
        "For your privacy, sessions end after a period without use, and when you sign out.",
        "Sign in again to continue.",
    ),
    "suspended": Message(
        429,
        "This session has been paused",
        "This session made more requests or downloads than the library's agreements with database "
        "vendors allow in a short time. Vendors can cut off the whole library's access when that "
        "happens, so the session was paused. The vendor was not told who you are.",
        "If you were doing ordinary research, please contact the library and we will help.",
    ),
    "too_many_attempts": Message(
        429,
        "Too many sign-in attempts",
        "There have been too many unsuccessful sign-in attempts. For your security, sign-in is "
        "paused for a while.",
        "Please try again in {retry_minutes} minutes, or contact the library for help.",
    ),
    "bad_request": Message(
        400,
        "Something went wrong with that request",
        "The request could not be understood.",
        "Go back and try again, or start from the list of databases.",
    ),
    "csrf": Message(
        400,
        "Please try again",
        "The sign-in form had expired or your browser did not send it back complete. Cookies must "
        "be allowed for the library's proxy address.",
        "Reload the page and sign in again.",
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

UI = {
    "skip": "Skip to main content",
    "login_heading": "Sign in to use the library's online databases",
    "card_label": "Library card number",
    "card_hint": "The 14-digit number on the back of your Weston library card.",
    "pin_label": "PIN",
    "pin_hint": "Usually the last four digits of your phone number, unless you changed it.",
    "sign_in": "Sign in",
    "privacy_promise": "We tell the databases only that you are a library member — never who you are — and keep no record of what you read or search.",
    "privacy_link": "How we protect your privacy",
    "menu_heading": "Your databases",
    "filter_label": "Find a database",
    "filter_button": "Filter",
    "no_match": "No database matches that filter.",
    "sign_out": "Sign out",
    "signed_out_heading": "You are signed out",
    "signed_out_text": "Your session has ended and everything the library's proxy held for it has been deleted.",
    "sign_in_again": "Sign in again",
    "help": "Need help?",
    "expiry_warning": "For your privacy, this session ends after {minutes} minutes without use.",
    "privacy_heading": "What each database learns about you",
    "back_to_menu": "Back to your databases",
}
