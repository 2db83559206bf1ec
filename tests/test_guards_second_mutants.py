"""From a second mutation sweep (2 December 2026) of the sign-in throttle, logs, page cookies,
config reading and the disclosure page: each test here was written for a one-line change to the
code that no other test noticed, and fails with it."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from proxy.config_read import doc, read_table
from proxy.errors import ConfigError, Problem

# --------------------------------------------------------------------------- proxy/throttle.py


@pytest.mark.parametrize(
    ("extra", "server", "key"),
    [
        ({"throttle": {"card_limit": 0}}, {}, "throttle.card_limit"),
        ({"throttle": {"address_window_s": 1000}}, {}, "throttle.address_window_s"),
        ({}, {"trusted_proxies": ("not-a-network",)}, "server.trusted_proxies"),
    ],
)
def test_the_throttle_settings_refuse_a_wrong_value_rather_than_use_it(
    tmp_path: Path, extra: dict[str, Any], server: dict[str, Any], key: str
) -> None:
    """kills: proxy/throttle.py:throttle_settings — `if problems or section is None:` →
    `if section is None:`.

    The `[throttle]` table reads (so `section` is not None) but a value is wrong: a card limit
    of 0, a window that does not divide a day, a trusted proxy that is not a network. The
    throttle must fail closed with the file and key named (ConfigError), never start (or
    reload) with a limit that refuses every patron, windows that straddle the daily key change,
    or an address counter nobody can reason about."""
    from proxy.config import Config, ServerConfig
    from proxy.throttle import throttle_settings

    config = Config(path=tmp_path / "proxy.toml", server=ServerConfig(**server), extra=extra)
    with pytest.raises(ConfigError) as caught:
        throttle_settings(config)
    assert [p.key for p in caught.value.problems] == [key]
    assert caught.value.problems[0].file == str(tmp_path / "proxy.toml")


# --------------------------------------------------------------------------- proxy/logs.py


def _redacted(**fields: object) -> dict[str, Any]:
    from proxy.logs import Redact

    return Redact()(None, "warning", {"event": "x", **fields})


def test_a_long_text_value_in_a_log_line_is_cut_to_500_characters() -> None:
    """kills: proxy/logs.py:Redact.__call__ — `value = scrub(value)[:500]` → `scrub(value)`.

    An error text can quote a whole vendor answer or a request body (a form a patron filled
    in, a page of search results): the log keeps its first 500 characters, enough to say what
    went wrong, never the whole of what the patron sent or read. (One line stays one line a
    log shipper can take, too.)"""
    out = _redacted(error="e" * 5000, reason="short")
    assert out["error"] == "e" * 500
    assert out["reason"] == "short"


def test_a_long_list_in_a_log_line_is_cut_to_50_items() -> None:
    """kills: proxy/logs.py:Redact.__call__ — `[... for v in value][:50]` → `[... for v in value]`.

    A list value (`problems`, `vendors`) is bounded as a text value is: a config with
    thousands of problems, or a list built from a request, cannot make one unbounded log line.
    Each item is still scrubbed and cut to 500 characters."""
    out = _redacted(problems=[f"p{i} " + "x" * 600 for i in range(400)])
    assert len(out["problems"]) == 50
    assert out["problems"][0] == "p0 " + "x" * 497
    assert out["problems"][-1].startswith("p49 ")


def test_a_library_records_exception_type_is_kept_and_its_message_is_not() -> None:
    """kills: proxy/logs.py:_foreign — `if record is not None and record.exc_info and
    record.exc_info[0] is not None:` → `if False:`.

    aiohttp or ldap3 logging an exception (`log.exception(...)`) is what IT staff need to see
    to know what broke: the line keeps the exception's type, while the message and the
    exception's text (which can quote a patron's address or a URL) are left out."""
    from proxy.logs import configure_logging

    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    try:
        raise ConnectionResetError("reset by 198.51.100.7 fetching /search?q=secret")
    except ConnectionResetError:
        logging.getLogger("aiohttp.server").exception("Error handling 198.51.100.7")
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert line["event"] == "library_log" and line["logger"] == "aiohttp.server"
    assert line["exc_type"] == "ConnectionResetError"
    assert "198.51.100.7" not in stream.getvalue() and "secret" not in stream.getvalue()


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_format_writes_readable_lines_on_a_terminal_and_json_elsewhere() -> None:
    """kills: proxy/logs.py:configure_logging — `console = fmt == "console" or (fmt == "auto"
    and stream.isatty())` → `console = fmt == "console"`.

    `format = "auto"` (the default) promises readable lines to someone running the proxy in a
    terminal and JSON to a log collector: the terminal must not get JSON."""
    from proxy.logs import configure_logging, get_logger

    terminal = _Terminal()
    configure_logging("info", "auto", stream=terminal)
    get_logger("proxy.test").info("auto_format_probe", status=200)
    text = terminal.getvalue().strip()
    assert "auto_format_probe" in text and not text.startswith("{")

    pipe = io.StringIO()
    configure_logging("info", "auto", stream=pipe)
    get_logger("proxy.test").info("auto_format_probe", status=200)
    assert json.loads(pipe.getvalue().strip())["event"] == "auto_format_probe"


# --------------------------------------------------------------------------- proxy/page_cookies.py


def test_cookie_names_skip_empty_parts_keep_the_nameless_one_and_repeat_none() -> None:
    """kills: proxy/page_cookies.py:page_cookie_names — the `if not piece.strip(): continue`
    dropped (and, as the sign-out tests do, `name.strip() if eq else ""` → `name.strip()` and
    `and name not in names` dropped).

    A Cookie header as browsers send it after scripts wrote to `document.cookie`: an empty
    part (`; ;`) is no cookie; a part without `=` is a nameless cookie whose whole text is its
    value (`document.cookie = "tracker-id-42"`), so its text must never be taken for a name
    (nor written back in a deletion, and the nameless cookie itself must be deleted); a name
    sent twice (two paths) is deleted once, not once per copy, so the header budget is not
    spent twice."""
    from proxy.page_cookies import page_cookie_names

    assert page_cookie_names("a=1; ; tracker-id-42; a=2;  ;b=") == ["a", "", "b"]
    # Without a nameless cookie, an empty part (or a trailing `;`) must not invent one.
    assert page_cookie_names("a=1; ;b=2;") == ["a", "b"]


def test_a_sibling_domain_that_only_ends_with_the_public_hosts_letters_is_not_shared() -> None:
    """kills: proxy/page_cookies.py:shared_domains — `not domain.endswith("." + public_host)`
    → `not domain.endswith(public_host)`.

    For the public host `proxy.lib.org`, `myproxy.lib.org` is another of the library's sites
    (or someone else's), not a domain the vendors share: the proxy deletes nothing there."""
    from proxy.page_cookies import shared_domains

    assert shared_domains("db.myproxy.lib.org", "proxy.lib.org") == ()
    assert shared_domains("db.a.proxy.lib.org", "proxy.lib.org") == (
        "a.proxy.lib.org",
        "proxy.lib.org",
    )


# --------------------------------------------------------------------------- proxy/config_read.py


@dataclasses.dataclass(frozen=True)
class _Item:
    name: str = doc("an item's name")
    weight: int = doc("an item's weight", 1)


@dataclasses.dataclass(frozen=True)
class _Table:
    card_limit: int = doc("a whole number", 5)
    timeout_s: float = doc("a number", 1.0)
    file: str = doc("set by the loader, never by the file", "")
    items: tuple[_Item, ...] = doc("an array of tables", ())


def _read(table: Any, prefix: str = "demo.") -> tuple[Any, list[Problem]]:
    problems: list[Problem] = []
    return read_table(_Table, table, "proxy.toml", prefix, problems), problems


def test_nan_for_a_whole_number_is_told_it_must_be_an_integer() -> None:
    """kills: proxy/config_read.py:_mismatch — `and _type_ok(1.0, tp)[0]` dropped.

    `card_limit = nan` is told what the key takes ("must be integer"): told "must be a finite
    number", staff write 2.5 and are refused again."""
    _, problems = _read({"card_limit": float("nan"), "timeout_s": float("inf")})
    assert [(p.key, p.message) for p in problems] == [
        ("demo.card_limit", "must be integer, not nan"),
        ("demo.timeout_s", "must be a finite number, not inf"),
    ]


def test_a_key_the_loader_sets_cannot_be_set_in_the_file() -> None:
    """kills: proxy/config_read.py:read_table — `if key not in known or key == "file":` →
    `if key not in known:`.

    A vendor's `file` says which file it came from (the loader sets it, and every problem and
    report names it): written in the table, it would make problems name a file that is not the
    one with the mistake. It is refused as an unknown key, file and key named."""
    section, problems = _read({"file": "/etc/elsewhere.toml"})
    assert section is not None and section.file == ""
    assert [(p.file, p.key) for p in problems] == [("proxy.toml", "demo.file")]
    assert problems[0].message.startswith("unknown key")


def test_a_key_the_loader_sets_is_not_suggested_for_itself() -> None:
    """Found with the mutant above (proxy/config_read.py:read_table, the `key == "file"`
    refusal): the hint is looked up among all the dataclass's fields, `file` included, so
    `file = "..."` in a vendor table is answered "unknown key (did you mean 'file'?)": the
    message tells staff to write the very key it refuses, where it should say only that the
    key is not one a table may set. Fixed the same day: the hint leaves `file` out."""
    _, problems = _read({"file": "/etc/elsewhere.toml"})
    assert [p.message for p in problems] == ["unknown key"]


def test_a_section_that_is_not_a_table_is_named_without_a_trailing_dot() -> None:
    """kills: proxy/config_read.py:read_table — `prefix.rstrip(".") or "(top)"` → `prefix or
    "(top)"`.

    `throttle = 5` instead of a `[throttle]` table is reported against the key staff wrote,
    `throttle` (not `throttle.`), and a whole file that is not a table against `(top)`."""
    assert _read(5, "throttle.") == (None, [Problem("proxy.toml", "throttle", "must be a table")])
    assert _read([], "") == (None, [Problem("proxy.toml", "(top)", "must be a table")])


def test_one_wrong_table_in_an_array_keeps_the_default_and_is_reported() -> None:
    """kills: proxy/config_read.py:read_table — `if all(i is not None for i in items):` →
    `if any(...)`.

    `[[demo.items]]` with one entry missing its required `name`: the problem names
    `demo.items[1].name`, and the array is left at its default rather than holding a `None`
    that later checks would trip over (a traceback instead of the list of mistakes)."""
    section, problems = _read({"items": [{"name": "a"}, {"weight": 2}]})
    assert section is not None and section.items == ()
    assert problems == [Problem("proxy.toml", "demo.items[1].name", "is required")]


def test_a_required_key_of_the_wrong_type_is_one_problem_not_two() -> None:
    """kills: proxy/config_read.py:read_table — `if name not in table:` → `if True:`.

    `name = 7` is a string of the wrong type, not a missing key: staff are told exactly that,
    once, and not also that the key they did write "is required"."""
    problems: list[Problem] = []
    assert read_table(_Item, {"name": 7}, "proxy.toml", "item.", problems) is None
    assert problems == [Problem("proxy.toml", "item.name", "must be string, not 7")]


def test_a_number_too_large_for_a_float_is_a_problem_naming_file_and_key() -> None:
    """Found while mutating proxy/config_read.py:_type_ok — `isinstance(value, int) or
    math.isfinite(value)` (an integer is taken as finite; `float(value)` follows).

    TOML integers have no size limit in Python's reader: `upstream_timeout_s = 1` followed by
    400 zeros reaches `float(value)`, which raises OverflowError, so `load_config` ends in a
    traceback instead of a Problem naming the file and `server.upstream_timeout_s`. Fixed the
    same day: integers beyond TOML's 64 bits are refused, for whole-number keys too."""
    _, problems = _read({"timeout_s": 10**400})
    assert [p.key for p in problems] == ["demo.timeout_s"]
    assert "64-bit" in problems[0].message


def _conf_with_server_lines(tmp_path: Path, lines: str) -> Path:
    import shutil

    conf = tmp_path / "conf"
    shutil.copytree(Path(__file__).resolve().parent.parent / "conf", conf)
    toml = conf / "proxy.toml"
    text = toml.read_text(encoding="utf-8")
    toml.write_text(text.replace("[server]\n", "[server]\n" + lines, 1), encoding="utf-8")
    return toml


def test_a_proxy_toml_with_integers_beyond_64_bits_names_file_and_keys(tmp_path: Path) -> None:
    """End to end, from a file: `load_config` on the embedded defaults with a 400-digit
    timeout (a float key) and a 30-digit `workers` (an integer key) ends in a ConfigError
    naming proxy.toml and both keys, not a traceback."""
    from proxy.config import load_config

    toml = _conf_with_server_lines(
        tmp_path, "upstream_timeout_s = 1" + "0" * 400 + "\nworkers = 9" + "9" * 30 + "\n"
    )
    with pytest.raises(ConfigError) as exc:
        load_config(toml)
    found = {(Path(p.file).name, p.key) for p in exc.value.problems}
    assert {("proxy.toml", "server.upstream_timeout_s"), ("proxy.toml", "server.workers")} <= found
    assert "64-bit" in str(exc.value)


def test_an_integer_too_long_for_python_to_read_is_a_syntax_problem_of_the_file(
    tmp_path: Path,
) -> None:
    """tomllib lets through Python's own ValueError for an integer of more than 4,300 digits
    (not a TOMLDecodeError): `load_config` used to end in that traceback, whose text tells IT
    staff to call `sys.set_int_max_str_digits()`. Now it is the file's syntax problem."""
    from proxy.config import load_config

    toml = _conf_with_server_lines(tmp_path, "workers = 9" + "9" * 5000 + "\n")
    with pytest.raises(ConfigError) as exc:
        load_config(toml)
    assert [(Path(p.file).name, p.key) for p in exc.value.problems] == [("proxy.toml", "(syntax)")]
    assert "64-bit" in str(exc.value) and "set_int_max_str_digits" not in str(exc.value)


def test_a_vendor_file_and_the_patrons_file_with_an_overlong_integer_say_so_plainly(
    tmp_path: Path,
) -> None:
    """The same 5,000-digit integer in a vendor file and in the patrons file: each is that
    file's problem in plain words, never the traceback of Python's digit limit (both read
    TOML through their own `tomllib.loads` and catch its ValueError)."""
    from proxy.config import load_vendor
    from proxy.patrons_file import read_patrons_file

    long_number = "9" * 5000
    vendor = tmp_path / "wren.toml"
    vendor.write_text(f'id = "wren"\ntimeout_s = {long_number}\n', encoding="utf-8")
    problems: list[Problem] = []
    assert load_vendor(vendor, problems) is None
    assert [(p.key, "64-bit" in p.message) for p in problems] == [("(syntax)", True)]
    patrons = tmp_path / "patrons.toml"
    patrons.write_text(f"[[patron]]\ncard = {long_number}\n", encoding="utf-8")
    found, problems = read_patrons_file(patrons)
    assert found == {}
    assert [(p.key, "64-bit" in p.message) for p in problems] == [("(syntax)", True)]
    assert "set_int_max_str_digits" not in " ".join(p.message for p in problems)


def test_the_three_toml_files_say_the_same_for_the_same_mistake(tmp_path: Path) -> None:
    """The main config, a vendor file and the patrons file are read by one reader
    (`config_read.read_toml`): a file saved in Latin-1 is "not UTF-8 text … save it as UTF-8"
    with the byte and its offset in each (the patrons file used to print Python's codec
    message), and a missing file gives the reason once, not Python's `[Errno 2]` repeating the
    path the problem already names."""
    from proxy.config import load_config, load_vendor
    from proxy.patrons_file import read_patrons_file

    latin1 = b'id = "caf\xe9"\n'
    said: list[Problem] = []
    for name in ("proxy.toml", "vendor.toml", "patrons.toml"):
        (tmp_path / name).write_bytes(latin1)
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "proxy.toml")
    said += err.value.problems
    assert load_vendor(tmp_path / "vendor.toml", said) is None
    said += read_patrons_file(tmp_path / "patrons.toml")[1]
    assert [(p.key, p.message) for p in said] == [
        ("(file)", "cannot be read: not UTF-8 text (byte 0xe9 at offset 9); save it as UTF-8")
    ] * 3
    missing: list[Problem] = []
    assert load_vendor(tmp_path / "gone.toml", missing) is None
    missing += read_patrons_file(tmp_path / "gone.toml")[1]
    assert [(p.key, p.message) for p in missing] == [
        ("(file)", "cannot be read: No such file or directory")
    ] * 2
