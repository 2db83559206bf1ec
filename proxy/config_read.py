"""The generic TOML table reader: one dataclass field per option, every mistake reported.

`doc()` declares an option once (type, default, one-line meaning); `read_table` turns a TOML table
into that dataclass, appending a `Problem` with file and key for each unknown key, wrong type
(TOML's `nan` and `inf` for a number included) or inline secret, and still returning what it
could so later checks report their problems too.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import math
import re
import tomllib
import types
import typing
from dataclasses import field
from pathlib import Path
from typing import Any, TypeVar, Union

from proxy.errors import Problem

T = TypeVar("T")
_SECRETISH = re.compile(r"(password|secret|token|private_key|api_key)$")


def doc(text: str, default: Any = dataclasses.MISSING) -> Any:
    """A dataclass field with a one-line meaning attached."""
    if default is dataclasses.MISSING:
        return field(metadata={"doc": text})
    if isinstance(default, list | dict | tuple):
        frozen = default
        return field(default_factory=lambda: frozen, metadata={"doc": text})
    return field(default=default, metadata={"doc": text})


# TOML's integers are 64-bit and a reader must refuse larger ones; Python's tomllib reads any
# size, and `float()` of a 400-digit one raises OverflowError (a traceback, not a Problem).
_INT64 = range(-(2**63), 2**63)
_INT64_LIMIT = f"TOML integers are 64-bit (at most {_INT64[-1]})"


def toml_problem(exc: ValueError) -> str:
    """What a TOML file that `tomllib.loads` refused is told. Besides TOMLDecodeError (a
    ValueError), tomllib lets through the ValueError of Python's 4,300-digit limit on reading
    an integer, whose text advises `sys.set_int_max_str_digits()`: not for IT staff."""
    if isinstance(exc, tomllib.TOMLDecodeError):
        return str(exc)
    return f"a number too long to read: {_INT64_LIMIT}"


def not_utf8(exc: UnicodeDecodeError) -> str:
    """What a config or template file that is not UTF-8 is told."""
    return (
        f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
        "save it as UTF-8"
    )


def read_toml(path: Path) -> dict[str, Any] | Problem:
    """A TOML file's top-level table, or the one Problem that says why it cannot be read:
    `(file)` when the file cannot be opened or is not UTF-8, `(syntax)` when tomllib refuses
    it. The one reader of the main config, the vendor files and the patrons file, so the three
    say the same thing for the same mistake."""
    name = str(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:  # the reason alone: the file is named beside it
        return Problem(name, "(file)", f"cannot be read: {exc.strerror or exc}")
    except UnicodeDecodeError as exc:  # before ValueError, which it is
        return Problem(name, "(file)", f"cannot be read: {not_utf8(exc)}")
    except ValueError as exc:  # TOMLDecodeError, or an integer of over 4,300 digits
        return Problem(name, "(syntax)", toml_problem(exc))


def _type_ok(value: Any, tp: Any) -> tuple[bool, Any]:
    """Check and convert one TOML value against a field type; returns (ok, converted)."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        for a in args:
            ok, v = _type_ok(value, a)
            if ok:
                return True, v
        return False, None
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool) and value in _INT64, value
    if tp is float:
        # TOML's nan and inf are floats, but no setting means them: a range check such as
        # `timeout_s <= 0` is never true for nan, and an infinite wait never ends.
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        ok = ok and (value in _INT64 if isinstance(value, int) else math.isfinite(value))
        return ok, float(value) if ok else None
    if tp is str:
        return isinstance(value, str), value
    if tp is dt.date:
        return isinstance(value, dt.date) and not isinstance(value, dt.datetime), value
    if origin is tuple:
        (inner, _) = typing.get_args(tp)
        if not isinstance(value, list):
            return False, None
        out = []
        for item in value:
            ok, v = _type_ok(item, inner)
            if not ok:
                return False, None
            out.append(v)
        return True, tuple(out)
    if origin is dict:
        ok = isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
        return ok, dict(value) if ok else None
    return False, None


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None))
    if origin is tuple:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return "table of strings"
    return {
        str: "string",
        int: "integer",
        float: "number",
        bool: "true or false",
        dt.date: "date",
    }.get(tp, getattr(tp, "__name__", str(tp)))


def _mismatch(value: Any, tp: Any) -> str:
    """What a value of the wrong type is told."""
    if isinstance(value, float) and not math.isfinite(value) and _type_ok(1.0, tp)[0]:
        return f"must be a finite number, not {value!r}"
    if isinstance(value, int) and not isinstance(value, bool) and value not in _INT64:
        # Not its repr: an integer of more than 4,300 digits has none (ValueError).
        return f"is too large: {_INT64_LIMIT}"
    return f"must be {_type_name(tp)}, not {value!r}"


def read_table(
    cls: type[T], table: Any, file: str, prefix: str, problems: list[Problem]
) -> T | None:
    """Build dataclass `cls` from a TOML table, appending a Problem for every wrong key."""
    if not isinstance(table, dict):
        problems.append(Problem(file, prefix.rstrip(".") or "(top)", "must be a table"))
        return None
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        where = f"{prefix}{key}"
        if key not in known or key == "file":
            if _SECRETISH.search(key):
                problems.append(
                    Problem(file, where, f"secrets must not be inline; use {key}_file or {key}_env")
                )
            else:
                # Not `file`: the loader sets it, so a table that names it is refused above.
                settable = [name for name in known if name != "file"]
                close = difflib.get_close_matches(key, settable, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                problems.append(Problem(file, where, f"unknown key{hint}"))
            continue
        tp = hints[key]
        if dataclasses.is_dataclass(tp) or (
            typing.get_origin(tp) in (Union, types.UnionType)
            and any(dataclasses.is_dataclass(a) for a in typing.get_args(tp))
        ):
            inner: Any = next(
                a for a in (typing.get_args(tp) or (tp,)) if dataclasses.is_dataclass(a)
            )
            sub = read_table(inner, value, file, f"{where}.", problems)
            if sub is not None:
                kwargs[key] = sub
            continue
        if typing.get_origin(tp) is tuple and dataclasses.is_dataclass(typing.get_args(tp)[0]):
            inner = typing.get_args(tp)[0]
            if not isinstance(value, list):
                problems.append(Problem(file, where, "must be an array of tables ([[...]])"))
                continue
            items = [
                read_table(inner, v, file, f"{where}[{i}].", problems) for i, v in enumerate(value)
            ]
            if all(i is not None for i in items):
                kwargs[key] = tuple(items)
            continue
        good, converted = _type_ok(value, tp)
        if not good:
            problems.append(Problem(file, where, _mismatch(value, tp)))
            continue
        kwargs[key] = converted
    missing_required = False
    for name, f in known.items():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and name not in kwargs:
            if name not in table:
                problems.append(Problem(file, f"{prefix}{name}", "is required"))
            missing_required = True
    # Keys that were wrong are left at their defaults (their problems are recorded), so the
    # checks that follow still see every other value and report their problems too.
    if missing_required:
        return None
    return cls(**kwargs)
