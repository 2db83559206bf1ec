"""Migrating a real EZproxy configuration: what an IT person meets. From a review of
import-ezproxy; every test failed before its fix."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from proxy.config import load_vendor
from proxy.errors import Problem
from proxy.ezproxy import convert, run_import
from tests.test_check_config_cross import PROXY
from tests.test_docs_truth import fenced

ROOT = Path(__file__).resolve().parent.parent


def _run(config: Path, out: Path, *, force: bool = False) -> tuple[int, str]:
    buf = io.StringIO()
    status = run_import(config, out, stdout=buf, force=force)
    return status, buf.getvalue()


def _check_config(conf: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy", "check-config", "--config", str(conf / "proxy.toml")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )


def test_shared_login_url_credentials_are_not_written_into_the_vendor_file(tmp_path: Path) -> None:
    """The import said the URL's credentials were 'never copied into the vendor file', yet the
    shared-login login_url kept the userinfo password and the query-string password."""
    cfg = tmp_path / "config.txt"
    cfg.write_text(
        "Title Shared Account DB\r\n"
        "URL -Form=post https://libacct:S3cretPw@login.shared.example/auth?user=lib1&pass=Hunter22\r\n"
        "FormVariable user=lib1\r\n"
        "FormVariable pass=Hunter22\r\n"
        "Host login.shared.example\r\n",
        newline="",
    )
    _, text = _run(cfg, tmp_path / "out")
    assert "never copied into the vendor file" in text
    written = (tmp_path / "out" / "shared-account-db.toml").read_text()
    assert "S3cretPw" not in written
    assert "Hunter22" not in written
    assert "libacct" not in written


def test_directives_before_the_first_title_are_not_silently_dropped(tmp_path: Path) -> None:
    """Global/positional directives above the first Title (AnonymousURL, AutoLoginIP, ExcludeIP,
    HTTPHeader, ProxyHostnameEdit, Find/Replace) vanished: no warning, no note, no line number."""
    cfg = tmp_path / "config.txt"
    cfg.write_text(
        "# Weston EZproxy\n"
        "Name ezproxy.westonlibrary.org\n"
        "AutoLoginIP 10.0.0.0-10.255.255.255\n"  # 3
        "ExcludeIP 192.168.0.0-192.168.255.255\n"  # 4
        "AnonymousURL +https://free.example.org/*\n"  # 5
        "HTTPHeader -request -process X-Api-Key\n"  # 6
        "ProxyHostnameEdit example.com$ example-com\n"  # 7
        'Find <a href="/old">\n'  # 8
        'Replace <a href="/new">\n'  # 9
        "\n"
        "Title Example DB\n"
        "URL https://www.example.com/\n"
        "Host www.example.com\n"
    )
    status, text = _run(cfg, tmp_path / "out")
    assert status == 0
    for n in range(3, 10):
        assert f"config.txt:{n}:" in text, f"line {n} not named in the summary:\n{text}"


def test_a_dos_end_of_file_mark_does_not_make_an_unloadable_vendor_file(tmp_path: Path) -> None:
    """A Windows config.txt ending in Ctrl-Z (0x1A): the importer copied the byte into a TOML
    comment, so the file it wrote did not parse and check-config/serve refused the directory."""
    cfg = tmp_path / "config.txt"
    cfg.write_bytes(b"Title Old DB\r\nURL https://old.example.org/\r\nHost old.example.org\r\n\x1a")
    status, text = _run(cfg, tmp_path / "out")
    problems: list[Problem] = []
    assert load_vendor(tmp_path / "out" / "old-db.toml", problems) is not None, problems
    assert problems == []
    assert status == 0, text


def test_line_numbers_stay_right_after_a_unicode_line_separator(tmp_path: Path) -> None:
    """A U+2028 pasted into a Title (EZproxy reads lines on newline only) was taken as a line
    break: the title was cut, its tail became a bogus directive, and every later warning named
    the wrong line."""
    result = convert(
        "Title Gale Literature\u2028Resource Center\n"
        "URL https://go.example.com/\n"
        "Host go.example.com\n"
        "Host bad..example.com\n"  # line 4
    )
    (s,) = result.stanzas
    assert "Resource Center" in s.title
    assert [m.where for m in s.warnings] == ["config.txt:4"]
    assert not any("Resource not converted" in m.text for m in s.notes)


def test_a_skipped_stanza_reason_does_not_print_the_url_password(tmp_path: Path) -> None:
    """The summary must not carry secrets (the project's own rule); a stanza skipped for a bad
    port printed its whole URL, password included."""
    cfg = tmp_path / "config.txt"
    cfg.write_text(
        "Title Good\nURL https://good.example.org/\nHost good.example.org\n"
        "Title Typo Port\nURL https://acct:S3cretPw@db.example.com:99999/\n"
    )
    _, text = _run(cfg, tmp_path / "out")
    assert "Typo Port" in text
    assert "S3cretPw" not in text


def test_import_into_a_non_empty_vendor_directory_reports_what_check_config_refuses(
    tmp_path: Path,
) -> None:
    """Importing into a directory that already held a vendor claiming the same hosts exited 0
    with no problem line, but check-config (and serve) then refused the directory."""
    conf = tmp_path
    (conf / "proxy.toml").write_text(PROXY)
    (conf / "patrons.toml").write_text("")
    vendors = conf / "vendors"
    vendors.mkdir()
    (vendors / "jstor-old.toml").write_text(
        'id = "jstor-old"\ntitle = "JSTOR"\norigin = "https://www.jstor.example"\n'
        'hosts = ["www.jstor.example"]\nauth = "ip"\n'
    )
    assert _check_config(conf).returncode == 0
    cfg = tmp_path / "config.txt"
    cfg.write_text("Title JSTOR Arts\nURL https://www.jstor.example/\nHost www.jstor.example\n")
    status, text = _run(cfg, vendors)
    after = _check_config(conf)
    assert after.returncode != 0  # the directory is now refused …
    assert status == 1 and "problem:" in text, text  # … so the import must say so


def test_docs_migration_steps_work_for_a_shared_login_vendor(tmp_path: Path) -> None:
    """docs/migrating-from-ezproxy.md as written: import into vendors.new, put the secrets where
    the summary says ('next to the vendor file') during review (step 2), then run step 3's
    commands and check-config. Step 3 used to be `mv vendors.new/*.toml vendors/`: the secrets
    stayed behind in vendors.new/secrets and check-config failed. The commands are now read from
    the document itself, so the two cannot drift apart again."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "proxy.toml").write_text(PROXY)
    (etc / "patrons.toml").write_text("")
    (etc / "vendors").mkdir()
    cfg = tmp_path / "config.txt"
    cfg.write_text(
        "Title Shared DB\nURL -Form=post https://login.shared.example/auth\n"
        "FormVariable user=lib1\nFormVariable pass=Hunter22\nHost login.shared.example\n"
    )
    new = etc / "vendors.new"
    status, text = _run(cfg, new)
    assert status == 0, text
    assert "next to the vendor file" in text
    (new / "secrets").mkdir()
    for name, value in (("shared-db-username", "lib1"), ("shared-db-password", "Hunter22")):
        (new / "secrets" / name).write_text(value + "\n")
        os.chmod(new / "secrets" / name, 0o600)
    (step3,) = [
        b for b in fenced(ROOT / "docs" / "migrating-from-ezproxy.md", "sh") if "check-config" in b
    ]
    before_check = step3.split("weston-proxy check-config")[0].replace(
        "/etc/weston-proxy", str(etc)
    )
    done = subprocess.run(["bash", "-eu", "-c", before_check], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    r = _check_config(etc)
    assert r.returncode == 0, r.stdout


def test_one_latin1_comment_does_not_garble_every_utf8_title_in_the_file(tmp_path: Path) -> None:
    """A config.txt edited over the years: UTF-8 titles, one comment saved in Latin-1. The whole
    file was then decoded as cp1252, so the patron menu showed 'AcadÃ©mie franÃ§aise', with no
    warning naming the line."""
    cfg = tmp_path / "config.txt"
    cfg.write_bytes(
        "# ajouté par Hélène\n".encode("latin-1")
        + "Title Académie française\nURL https://www.academie.example.fr/\n"
        "Host www.academie.example.fr\n".encode()
    )
    result = convert(cfg)
    (s,) = result.stanzas
    assert s.title == "Académie française" or any(
        m.where.endswith(":2") for m in (*result.warnings, *s.warnings)
    ), s.title


def test_no_stanza_error_names_the_include_that_could_not_be_read(tmp_path: Path) -> None:
    """A config.txt that is only IncludeFile lines (the usual layout of a big site) whose include
    was not copied along: the command said 'no Title line found' and never named the missing
    IncludeFile or its line, the one thing the IT person needs to fix."""
    cfg = tmp_path / "config.txt"
    cfg.write_text("Name ezproxy.westonlibrary.org\nIncludeFile databases/ebsco.txt\n")
    status, text = _run(cfg, tmp_path / "out")
    assert status == 1
    assert "config.txt:2" in text and "databases/ebsco.txt" in text, text


def test_a_windows_includefile_path_with_backslashes_is_followed(tmp_path: Path) -> None:
    """config.txt from an EZproxy on Windows: `IncludeFile databases\\ebsco.txt`. On the proxy's
    Linux host the backslash was read as part of a file name, the include was not found and its
    stanzas were not imported."""
    (tmp_path / "databases").mkdir()
    (tmp_path / "databases" / "ebsco.txt").write_text(
        "Title EBSCOhost\r\nURL https://search.ebscohost.example/\r\n"
        "Host search.ebscohost.example\r\n",
        newline="",
    )
    cfg = tmp_path / "config.txt"
    cfg.write_text("IncludeFile databases\\ebsco.txt\r\n", newline="")
    result = convert(cfg)
    assert [s.vendor_id for s in result.stanzas] == ["ebscohost"], result.warnings


def test_a_byte_order_mark_inside_the_file_does_not_merge_two_databases(tmp_path: Path) -> None:
    """Two Windows stanza files concatenated into config.txt (each saved with a UTF-8 BOM): the
    second BOM sat before a Title, the Title was not recognised, and database B's URL and hosts
    were folded into vendor A (B vanished from the menu, its hosts got A's login)."""
    cfg = tmp_path / "config.txt"
    cfg.write_bytes(
        b"\xef\xbb\xbfTitle A\r\nURL https://a.example.com/\r\nHost a.example.com\r\n"
        b"\xef\xbb\xbfTitle B\r\nURL https://b.example.com/\r\nHost b.example.com\r\n"
    )
    result = convert(cfg)
    assert [s.vendor_id for s in result.stanzas] == ["a", "b"]
    a = result.stanzas[0]
    assert a.vendor is not None and a.vendor["hosts"] == ["a.example.com"]
