"""The patrons file of a `kind = "file"` directory, read and checked (by the directory and by
check-config): card, PIN hash, expiry, groups, blocked, with every mistake named by its key."""

from __future__ import annotations

import datetime as dt
import difflib
from dataclasses import dataclass
from pathlib import Path

from proxy.config_read import read_toml
from proxy.errors import Problem


@dataclass(frozen=True)
class FilePatron:
    card: str
    hash: str
    expires: dt.date | None
    groups: frozenset[str]
    blocked: bool


# The keys of one `[[patron]]` table. Any other is a mistake named with its key: a `block = true`
# that is not `blocked` would leave the card working with no word anywhere.
KEYS = ("card", "hash", "expires", "groups", "blocked")


def _unknown(path: Path, where: str, key: str, known: tuple[str, ...]) -> Problem:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return Problem(str(path), where, f"unknown key{hint}")


def read_patrons_file(path: Path) -> tuple[dict[str, FilePatron], list[Problem]]:
    """The patrons of a `kind = "file"` directory, and every mistake in the file (with its key):
    a value of another type would otherwise fail each sign-in of that card, or (groups written
    as one string) silently become groups of single letters."""
    problems: list[Problem] = []
    out: dict[str, FilePatron] = {}
    data = read_toml(path)
    if isinstance(data, Problem):
        return out, [data]
    # A `[[patrons]]` typo would otherwise load as a directory with no patrons in it.
    problems += [_unknown(path, k, k, ("patron",)) for k in data if k != "patron"]
    entries = data.get("patron", [])
    if not isinstance(entries, list):
        return out, [*problems, Problem(str(path), "patron", "must be [[patron]] tables")]
    for i, entry in enumerate(entries):
        key = f"patron[{i}]"
        if not isinstance(entry, dict):
            problems.append(Problem(str(path), key, "must be a [[patron]] table (card, hash)"))
            continue
        strays = [k for k in entry if k not in KEYS]
        if strays:
            problems += [_unknown(path, f"{key}.{k}", k, KEYS) for k in strays]
            continue
        card, hashed = entry.get("card"), entry.get("hash")
        expires, groups = entry.get("expires"), entry.get("groups", [])
        blocked = entry.get("blocked", False)
        wrong: list[tuple[str, str]] = []
        if not isinstance(card, (str, int)) or isinstance(card, bool):
            wrong.append((f"{key}.card", "must be the card number, as text or a whole number"))
        if not isinstance(hashed, str):
            wrong.append((f"{key}.hash", "must be the PIN's hash, as text (hash-password)"))
        if expires is not None and (
            not isinstance(expires, dt.date) or isinstance(expires, dt.datetime)
        ):
            wrong.append((f"{key}.expires", "must be a date without quotes, like 2027-06-30"))
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            wrong.append((f"{key}.groups", 'must be a list of names, like ["resident"]'))
        if not isinstance(blocked, bool):
            wrong.append((f"{key}.blocked", "must be true or false"))
        if wrong:
            problems += [Problem(str(path), k, why) for k, why in wrong]
            continue
        out[str(card)] = FilePatron(
            card=str(card),
            hash=str(hashed),
            expires=expires,
            groups=frozenset(groups),
            blocked=blocked,
        )
    return out, problems


__all__ = ["FilePatron", "read_patrons_file"]
