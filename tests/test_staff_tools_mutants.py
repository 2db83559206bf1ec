"""From a mutation sweep (1 December 2026) of the IT staff tools (EZproxy import, CLIs, keys
and secrets): each test here was written for a one-line change to the code that no other test
noticed, and fails with it."""

from __future__ import annotations

import io
from pathlib import Path

from proxy.ezproxy import convert, run_import


def _import(tmp_path: Path, text: str) -> tuple[int, str, Path]:
    cfg = tmp_path / "config.txt"
    cfg.write_text(text, encoding="utf-8")
    out = tmp_path / "vendors"
    buf = io.StringIO()
    status = run_import(cfg, out, stdout=buf)
    return status, buf.getvalue(), out


def _vendor(text: str, vendor_id: str) -> dict:
    result = convert(text)
    s = next(s for s in result.stanzas if s.vendor_id == vendor_id)
    assert s.vendor is not None, s.skip_reason
    return s.vendor


def test_a_form_field_repeating_the_password_under_another_name_is_not_written(
    tmp_path: Path,
) -> None:
    """kills: proxy/ezproxy_stanza.py:_shared_login — `elif value in secrets:` → `elif False:`.
    A login form that sends the library-wide password twice (a "confirm" field EZproxy filled
    with the same value) must not put that password in clear into the vendor file's
    extra_fields: the staff member was told the password lives only in the secret file."""
    status, summary, out = _import(
        tmp_path,
        "Title Heron Archive\n"
        "URL -Form=post https://login.heron.example/signin\n"
        "FormVariable username=westonlib-heron\n"
        "FormVariable password=Wr3n-D0nt-Leak\n"
        "FormVariable confirm=Wr3n-D0nt-Leak\n"
        "FormVariable lang=en\n"
        "Host login.heron.example\n",
    )
    assert status == 0, summary
    text = (out / "heron-archive.toml").read_text(encoding="utf-8")
    assert "Wr3n-D0nt-Leak" not in text
    assert "Wr3n-D0nt-Leak" not in summary
    assert 'lang = "en"' in text  # an ordinary field is still copied
    assert "confirm repeats a credential" in text


def test_a_referer_vendor_on_login_port_80_gets_the_url_it_registered() -> None:
    """kills: proxy/ezproxy_stanza.py:_referer_url — `'' if port == '80'` → `'' if port == '443'`.
    A vendor that lets patrons in on EZproxy's referring URL compares it exactly: with LoginPort
    80 EZproxy sent `http://name/referer/code` (no `:80`), so the import must write that, or
    every patron of the library is refused on the first day."""
    text = (
        "Name ezproxy.weston.example\n"
        "LoginPort 80\n"
        "Referer wren-7731\n"
        "Title Wren Atlas\n"
        "URL https://www.wrenatlas.example/\n"
        "Host www.wrenatlas.example\n"
        "Referer\n"
    )
    vendor = _vendor(text, "wren-atlas")
    assert vendor["auth"] == "referer"
    assert vendor["referer"] == "http://ezproxy.weston.example/referer/wren-7731"
    other = _vendor(text.replace("LoginPort 80", "LoginPort 443"), "wren-atlas")
    assert other["referer"] == "http://ezproxy.weston.example:443/referer/wren-7731"


def test_find_and_replace_keep_the_spaces_at_their_ends() -> None:
    """kills: proxy/ezproxy_stanza.py:finish_stanza — `find.raw`/`rep.raw` → `.value` (stripped).
    A Find/Replace pair is literal text of the vendor's page: the space at the end of
    `document.domain = ` is part of what EZproxy searched for, and a rule without it would match
    other text (or, for Replace, glue two words of the script together)."""
    vendor = _vendor(
        "Title Heron Scripts\n"
        "URL https://www.heronscripts.example/\n"
        "Host www.heronscripts.example\n"
        "Find document.domain = \n"
        "Replace var ignored = \n",
        "heron-scripts",
    )
    [rule] = vendor["rewrite"]
    assert rule["find"] == "document.domain = "
    assert rule["replace"] == "var ignored = "


def test_a_find_without_a_replace_is_reported_not_silently_dropped() -> None:
    """kills: proxy/ezproxy_stanza.py:finish_stanza — the "Find without a Replace" warning → `pass`.
    A Find line that cannot become a rewrite rule is left out; the staff member must be told
    which line, and the stanza must not be counted as converted cleanly."""
    result = convert(
        "Title Heron Scripts\n"
        "URL https://www.heronscripts.example/\n"
        "Host www.heronscripts.example\n"
        "Find var base = 'https://www.heronscripts.example'\n"
    )
    [s] = result.stanzas
    assert s.status == "converted-with-warnings"
    assert "rewrite" not in s.vendor
    assert [str(m) for m in s.warnings] == [
        "config.txt:4: Find without a Replace after it; left out"
    ]


def test_the_host_of_a_second_url_line_is_still_proxied() -> None:
    """kills: proxy/ezproxy_stanza.py:add_stanza_line — the second URL's host append → `pass`.
    EZproxy proxied the host of every URL line of a stanza; the import keeps the first as the
    starting point but must still proxy the second one's host, or the pages patrons reach there
    go to the vendor outside the proxy (and an IP-authenticated vendor refuses them)."""
    result = convert(
        "Title Wren Books\n"
        "URL https://www.wrenbooks.example/\n"
        "URL https://search.wrenbooks-cdn.example/start\n"
        "Host www.wrenbooks.example\n"
    )
    [s] = result.stanzas
    assert s.vendor["hosts"] == ["www.wrenbooks.example", "search.wrenbooks-cdn.example"]
    assert s.vendor["start_url"] == "https://www.wrenbooks.example/"
    assert any("a second URL line" in m.text for m in s.warnings)


def test_a_url_carrying_a_usrvar_substitution_is_refused_as_patron_data() -> None:
    """kills: proxy/ezproxy_stanza.py:_IDENTITY_CARET — `[uUiI0-9]` → `[uUiI]`.
    `^0`-`^9` are the patron's UsrVar values (a card number, a department): a stanza whose
    starting URL carries one sent patron data to the vendor, so it is skipped with that reason
    instead of being imported with a starting URL the vendor cannot use."""
    result = convert(
        "Title Heron Stats\n"
        "URL https://www.heronstats.example/start?dept=^3\n"
        "Host www.heronstats.example\n"
    )
    [s] = result.stanzas
    assert s.status == "skipped"
    assert s.vendor is None
    assert "patron substitution" in s.skip_reason


def test_a_replace_carrying_a_patron_substitution_is_refused_as_patron_data() -> None:
    """kills: proxy/ezproxy_stanza.py:finish_stanza — `if _IDENTITY_CARET.search(rep.raw)` →
    `if False`. A Replace that put the patron's username (`^u`) or a UsrVar (`^4`) into the
    vendor's page is refused and the staff member is told why (patron data), and none of it
    becomes a rewrite rule."""
    from proxy.ezproxy import PATRON_DATA

    result = convert(
        "Title Heron Stats\n"
        "URL https://www.heronstats.example/\n"
        "Host www.heronstats.example\n"
        "Find user=guest\n"
        "Replace user=^u\n"
        "Find dept=none\n"
        "Replace dept=^4\n"
    )
    [s] = result.stanzas
    assert "rewrite" not in s.vendor
    texts = [str(m) for m in s.warnings]
    assert f"config.txt:5: Replace refused: its substitution {PATRON_DATA}" in texts
    assert f"config.txt:7: Replace refused: its substitution {PATRON_DATA}" in texts


def test_an_existing_shared_login_secret_readable_by_others_is_reported(tmp_path: Path) -> None:
    """kills: proxy/ezproxy.py:_vendor_problems — the filter `p.key in waiting and "does not
    exist" in p.message` → `p.key in waiting`. Only a secret file the summary asks for and that
    is not there yet is forgiven; one already there that check-config refuses (readable by every
    user of the machine) is reported with its file and key, and the import exits 1."""
    out = tmp_path / "vendors"
    (out / "secrets").mkdir(parents=True)
    pw = out / "secrets" / "heron-archive-password"
    pw.write_text("Wr3n-D0nt-Leak\n")
    pw.chmod(0o644)
    status, summary, _ = _import(
        tmp_path,
        "Title Heron Archive\n"
        "URL -Form=post https://login.heron.example/signin\n"
        "FormVariable username=westonlib-heron\n"
        "FormVariable password=Wr3n-D0nt-Leak\n"
        "Host login.heron.example\n",
    )
    problems = [ln for ln in summary.splitlines() if ln.startswith("problem:")]
    assert status == 1, summary
    assert len(problems) == 1, summary
    assert "heron-archive.toml" in problems[0]
    assert "shared_login.password_file" in problems[0]
    assert "Wr3n-D0nt-Leak" not in summary


def test_text_after_a_dos_end_of_file_mark_is_not_imported(tmp_path: Path) -> None:
    """kills: proxy/ezproxy_read.py:split_lines — `text.partition("\\x1a")` → no partition.
    EZproxy on Windows stopped reading at Ctrl-Z: a stanza left after it (an old copy pasted
    below the mark) was never in use, so it must not become a vendor, and the staff member is
    told the rest of the file was ignored."""
    result = convert(
        "Title Wren Atlas\n"
        "URL https://www.wrenatlas.example/\n"
        "Host www.wrenatlas.example\n"
        "\x1a\n"
        "Title Old Heron\n"
        "URL https://www.oldheron.example/\n"
    )
    assert [s.vendor_id for s in result.stanzas] == ["wren-atlas"]
    assert [m.text for m in result.warnings] == [
        "text after a DOS end-of-file mark (Ctrl-Z) ignored"
    ]


def test_a_control_character_in_a_directive_does_not_make_the_vendor_file_unloadable(
    tmp_path: Path,
) -> None:
    """kills: proxy/ezproxy_write.py:render — the control-character replacement → `pass`.
    A stray BEL or ESC byte in a directive (a config.txt edited over a terminal) is quoted in the
    review comment; TOML allows no control character in a comment, so without the replacement
    the vendor file written would not load and the import would report its own output broken."""
    from proxy.config import load_vendor
    from proxy.errors import Problem

    status, summary, out = _import(
        tmp_path,
        "Title Wren Atlas\n"
        "URL https://www.wrenatlas.example/\n"
        "Host www.wrenatlas.example\n"
        "Metered\x07Access on\n"
        "Option Domain\x1bCookieOnly\n",
    )
    assert status == 0, summary
    problems: list[Problem] = []
    assert load_vendor(out / "wren-atlas.toml", problems) is not None
    assert problems == []
    assert "\N{REPLACEMENT CHARACTER}" in (out / "wren-atlas.toml").read_text(encoding="utf-8")


def test_a_secret_file_keeps_every_character_but_the_line_end(tmp_path: Path) -> None:
    """kills: proxy/secrets_.py:read_secret_file — `.rstrip("\\r\\n")` → `.strip()`.
    A pass phrase may begin or end with a space or a tab; the proxy must send the password
    exactly as the staff member wrote it (only the editor's line end goes), or the vendor or
    Redis refuses it with no clue why."""
    from proxy.secrets_ import read_secret_file

    f = tmp_path / "pw"
    f.write_bytes(b" wren heron\t \r\n")
    f.chmod(0o600)
    assert read_secret_file(f) == " wren heron\t "


def test_the_server_secret_length_bound_is_exactly_32_bytes() -> None:
    """kills: proxy/crypto.py:server_secret_problem — `n < MIN_SERVER_SECRET_BYTES` → `<=`.
    A 32-byte secret (what `openssl rand -base64 24` gives) is accepted and one of 31 refused,
    naming the length: the bound the docs state, not one byte stricter."""
    from proxy.crypto import server_secret_problem

    assert server_secret_problem("k" * 32) is None
    problem = server_secret_problem("k" * 31)
    assert problem is not None and "31 bytes" in problem and "at least 32" in problem


def test_a_sealing_secret_shorter_than_16_bytes_is_refused() -> None:
    """kills: proxy/crypto.py:derive_key — `len(secret) < MIN_SECRET_BYTES` → `< 1`.
    A sealing secret short enough to guess offline would open a copy of the session store;
    it is refused, and one of 16 bytes is taken."""
    import pytest

    from proxy.crypto import SessionSealer, derive_key

    with pytest.raises(ValueError, match="at least 16 bytes"):
        derive_key(b"k" * 15, b"purpose")
    with pytest.raises(ValueError):
        SessionSealer(b"k" * 15)
    assert len(derive_key(b"k" * 16, b"purpose")) == 32


def test_a_secret_path_naming_a_folder_says_so(tmp_path: Path) -> None:
    """kills: proxy/secrets_.py:read_secret_file — `if not stat.S_ISREG(...)` → `if False`.
    A secret path that names a folder (or a named pipe, which would hang the read) is refused
    before anything is read, and the message names the path and tells the staff member to name
    the file in it, not to chmod the folder."""
    import pytest

    from proxy.secrets_ import SecretError, read_secret_file

    d = tmp_path / "secrets"
    d.mkdir(mode=0o700)
    d.chmod(0o700)
    with pytest.raises(SecretError) as exc:
        read_secret_file(d)
    assert str(exc.value) == f"{d}: is not a regular file (a directory?); name the file in it"


def test_a_generated_server_secret_is_private_and_kept(tmp_path: Path, port: int) -> None:
    """kills: proxy/secrets_.py:_server_secret — the new file's mode `0o600` → `0o640`.
    On first start the proxy writes its own server secret (it keys every pairwise `sub`): the
    file must be readable by the proxy's user alone, so the proxy's own check accepts it and the
    same secret is read again at the next start (patrons keep their `sub` at every vendor)."""
    import stat

    from proxy.cli import config_checks
    from proxy.config import load_config
    from proxy.secrets_ import server_secret
    from tests.test_reload import file_directory_config

    cfg = file_directory_config(tmp_path, port, {})
    config = load_config(cfg, extra_checks=config_checks())
    path = config.resolve(config.session.secret_file)
    path.unlink(missing_ok=True)
    first = server_secret(config)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) == 64
    assert server_secret(config) == first


def test_a_retired_key_leaves_no_file_behind(tmp_path: Path, port: int) -> None:
    """kills: proxy/cli.py:cmd_keys — retire's `path.with_suffix(".json").unlink(...)` → `pass`.
    `keys retire` removes the key and its activation file: the key directory then holds only
    the keys in use, as the staff member who reads or backs it up expects."""
    from tests.test_reload import file_directory_config, run_cli

    cfg = file_directory_config(tmp_path, port, {})
    keys = tmp_path / "state" / "keys"
    first = run_cli("keys", "rotate", "--config", str(cfg), "--delay", "0")
    assert first.returncode == 0, first.stderr
    old = first.stdout.split()[1].rstrip(";")
    assert run_cli("keys", "rotate", "--config", str(cfg), "--delay", "0").returncode == 0
    r = run_cli("keys", "retire", old, "--force", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in keys.iterdir() if p.stem == old) == []
    assert len(list(keys.glob("*.pem"))) == len(list(keys.glob("*.json"))) == 1


def test_reload_does_not_report_an_earlier_reloads_outcome(tmp_path: Path, port: int) -> None:
    """kills: proxy/admin_cli.py:_wait_for_outcome — `float(data.get("at", 0)) >= sent` →
    `if data:`. The outcome file still holds the last reload's "reloaded"; a proxy that has not
    answered this SIGHUP must make `reload` say there is no outcome and exit 1, not print the
    old success (the staff member would believe a broken change is live)."""
    import json
    import subprocess
    import sys

    from proxy.cli import main
    from proxy.config import load_config
    from proxy.reload import status_path
    from tests.test_reload import file_directory_config

    cfg = file_directory_config(tmp_path, port, {})
    config = load_config(cfg)
    status = status_path(config)
    status.parent.mkdir(parents=True, exist_ok=True)
    status.write_text(json.dumps({"at": 1.0, "outcome": "reloaded", "vendors": 0, "kids": []}))
    # A process named like the proxy that ignores SIGHUP: it never writes an outcome.
    sleeper = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGHUP, signal.SIG_IGN); time.sleep(30)",
            "weston-proxy",
        ]
    )
    try:
        import time

        time.sleep(0.3)
        rc = main(["reload", "--config", str(cfg), "--pid", str(sleeper.pid), "--wait", "0.5"])
    finally:
        sleeper.kill()
        sleeper.wait()
    assert rc == 1


def test_vendors_test_exits_1_when_the_vendor_cannot_be_reached(tmp_path: Path, port: int) -> None:
    """kills: proxy/admin_cli.py:cmd_vendors_test — `EXIT_OK if report.ok else EXIT_FAIL` →
    `EXIT_OK`. `vendors test` is what staff (and their monitoring scripts) run before telling
    patrons a database works: a vendor that cannot be reached prints PROBLEM and exits 1."""
    from tests.test_reload import file_directory_config, run_cli
    from tests.test_vendors_cli import two_toml

    cfg = file_directory_config(tmp_path, port, {"two": two_toml()})
    r = run_cli("vendors", "test", "two", "--config", str(cfg))
    assert "vendor two: PROBLEM" in r.stdout, r.stdout + r.stderr
    assert r.returncode == 1


def test_a_starting_page_answering_404_is_a_problem() -> None:
    """kills: proxy/vendor_test.py:Report.ok — `self.status < 400` → `< 500`.
    A vendor whose starting page answers 404 (a moved landing page) sends every patron to an
    error: `vendors test` must call it a PROBLEM (exit 1), not OK; a 399 or a 200 is fine."""
    from proxy.vendor_test import Report

    assert not Report("wren", "https://www.wrenatlas.example/", status=404).ok
    assert not Report("wren", "https://www.wrenatlas.example/", status=400).ok
    assert Report("wren", "https://www.wrenatlas.example/", status=200).ok
    assert Report("wren", "https://www.wrenatlas.example/", status=399).ok


def test_two_finds_before_their_replaces_pair_only_the_find_directly_before_a_replace() -> None:
    """From the sweep's open question (which pending Find a Replace takes): OCLC's documentation
    says Find and Replace "always appear paired together, with Find appearing directly before
    its corresponding Replace". Two Finds followed by two Replaces are a mistake in config.txt:
    the second Find pairs with the first Replace; the first Find and the second Replace have
    no partner, and each is reported with its line instead of being paired with the other
    (which wrote a rule EZproxy never applied: `alpha` replaced by `TWO`)."""
    result = convert(
        "Title Heron Scripts\n"
        "URL https://www.heronscripts.example/\n"
        "Host www.heronscripts.example\n"
        "Find alpha\n"
        "Find beta\n"
        "Replace ONE\n"
        "Replace TWO\n"
    )
    [s] = result.stanzas
    assert [(r["find"], r["replace"]) for r in s.vendor["rewrite"]] == [("beta", "ONE")]
    assert [str(m) for m in s.warnings] == [
        "config.txt:4: Find without a Replace after it; left out",
        "config.txt:7: Replace without a Find before it; left out",
    ]
