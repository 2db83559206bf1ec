"""From a second mutation sweep (2 December 2026) of the EZproxy import and export: each test here
was written for a one-line change to the code that no other test noticed, and fails with it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from proxy.ezproxy import convert, render, summary


def _one(text: str) -> Any:
    """The one stanza of an EZproxy config text."""
    (s,) = convert(text).stanzas
    return s


def test_a_ctrl_z_followed_only_by_a_line_end_gives_no_warning() -> None:
    """kills: proxy/ezproxy_read.py:67 (split_lines) — `if eof and rest.strip():` → `if eof:`.
    An old DOS editor ends config.txt with Ctrl-Z, often followed by the line end a later edit
    added: nothing was cut off, so the summary must not send the staff member hunting for
    ignored text after the mark (a warning that is always false teaches people to skip them)."""
    result = convert(
        "Title Wren Atlas\r\n"
        "URL https://www.wrenatlas.example/\r\n"
        "Host www.wrenatlas.example\r\n"
        "\x1a\r\n"
    )
    assert [s.vendor_id for s in result.stanzas] == ["wren-atlas"]
    assert result.warnings == ()


def test_an_include_inside_an_include_is_found_from_the_main_config_folder_first(
    tmp_path: Path,
) -> None:
    """kills: proxy/ezproxy_read.py:102 (read_lines) — `[root / rel, path.parent / rel]` →
    `[path.parent / rel, root / rel]`.
    EZproxy resolves every IncludeFile from its own folder (the main config.txt's), whichever file
    the line is in. When a file of that name also sits next to the including file (an old copy),
    the import must convert the one EZproxy really used, not the stale copy."""
    (tmp_path / "databases").mkdir()
    cfg = tmp_path / "config.txt"
    cfg.write_text("IncludeFile databases/all.txt\n", encoding="utf-8")
    (tmp_path / "databases" / "all.txt").write_text("IncludeFile heron.txt\n", encoding="utf-8")
    (tmp_path / "heron.txt").write_text(
        "Title Heron Live\nURL https://live.heron.example/\nHost live.heron.example\n",
        encoding="utf-8",
    )
    (tmp_path / "databases" / "heron.txt").write_text(
        "Title Heron Stale Copy\nURL https://old.heron.example/\nHost old.heron.example\n",
        encoding="utf-8",
    )
    result = convert(cfg)
    assert [s.title for s in result.stanzas] == ["Heron Live"]
    assert result.stanzas[0].source == "heron.txt"


def test_a_windows_curly_apostrophe_in_a_title_is_read_as_cp1252(tmp_path: Path) -> None:
    """kills: proxy/ezproxy_read.py:55 (_decode) — `decode("cp1252", …)` → `decode("latin-1", …)`.
    A title typed on Windows carries byte 0x92 for the apostrophe. Read as cp1252 it is a right
    single quotation mark; read as Latin-1 it is the invisible C1 control U+0092, which the
    patron menu would then show as a box or nothing ("Heron s Guide")."""
    cfg = tmp_path / "config.txt"
    cfg.write_bytes(
        b"Title Heron\x92s Guide\r\nURL https://www.heronguide.example/\r\n"
        b"Host www.heronguide.example\r\n"
    )
    s = _one(cfg)
    assert s.vendor is not None, s.skip_reason
    assert s.vendor["title"] == "Heron\N{RIGHT SINGLE QUOTATION MARK}s Guide"


def test_every_review_comment_stays_on_one_line_in_any_editor() -> None:
    """kills: proxy/ezproxy_write.py:26 (render) — `head = [" ".join(h.split()) …]` → `pass`.
    A directive value pasted from a web page can carry a Unicode line separator (U+2028) or a run
    of spaces. Quoted in a review comment, U+2028 would start a new line in most editors with no
    `#` in front of it, so the staff member reads half a warning as if it were TOML; the comment
    must stay one `#` line with single spaces."""
    s = _one(
        "Title Wren Atlas\n"
        "URL https://www.wrenatlas.example/\n"
        "Host www.wrenatlas.example\n"
        "Option Metered\u2028Access   Mode\n"
    )
    text = render(s, today=dt.date(2026, 12, 2))
    head = text.split("\n\n", 1)[0]
    assert all(line.startswith("# ") for line in head.splitlines()), head
    assert "Option Metered Access Mode has no equivalent here" in head


def test_the_summary_lists_no_notes_for_a_vendor_file_that_was_not_written() -> None:
    """kills: proxy/ezproxy_write.py:51 (summary) — `… for m in s.notes if s.vendor]` →
    `… for m in s.notes]`.
    The Notes list tags each note with the vendor file it is about, for the staff member to go
    and review. A skipped stanza wrote no file: a note tagged `[heron-tokens]` would send them to
    look for a vendor that does not exist (the stanza is listed under Skipped with its reason)."""
    result = convert(
        "Title Wren Atlas\n"
        "URL https://www.wrenatlas.example/\n"
        "Host www.wrenatlas.example\n"
        "Option Metered\n"
        "Title Heron Tokens\n"
        "URL https://www.herontokens.example/^B\n"
        "Option Unmetered\n"
    )
    assert [s.status for s in result.stanzas] == ["converted", "skipped"]
    text = summary(result)
    assert "[wren-atlas]" in text
    assert "heron-tokens" not in text
    assert "Option Unmetered" not in text


def test_a_stanza_continued_in_an_included_file_keeps_its_own_line_range(tmp_path: Path) -> None:
    """kills: proxy/ezproxy_stanza.py:95 (add_stanza_line) — `d.last = ln.number if ln.file ==
    d.title_line.file else d.last` → `d.last = ln.number`.
    The vendor file's first comment says where the stanza was ("config.txt lines 5 to 6"). Lines
    from an IncludeFile inside the stanza are numbered in that other file: taking their numbers
    gave "config.txt lines 5 to 1", pointing the staff member at the wrong part of config.txt."""
    cfg = tmp_path / "config.txt"
    cfg.write_text(
        "Name ezproxy.weston.example\n"
        "# databases\n"
        "\n"
        "# -- Wren --\n"
        "Title Wren Atlas\n"
        "URL https://www.wrenatlas.example/\n"
        "IncludeFile wren-hosts.txt\n",
        encoding="utf-8",
    )
    (tmp_path / "wren-hosts.txt").write_text("Host www.wrenatlas.example\n", encoding="utf-8")
    s = _one(cfg)
    assert s.vendor is not None, s.skip_reason
    assert (s.source, s.first_line, s.last_line) == ("config.txt", 5, 6)


def test_a_host_written_with_an_upper_case_scheme_is_still_proxied() -> None:
    """kills: proxy/ezproxy_stanza.py:88 (host_of) — `re.sub(r"^[a-z]+://", …, flags=re.I)` →
    without `re.I`.
    EZproxy reads `Host HTTPS://cdn.wrenatlas.example` (scheme case does not matter in a URL);
    without ignoring case the import took `https` for the host, so the vendor's real CDN host
    was not proxied and its pages broke behind the proxy."""
    s = _one(
        "Title Wren Atlas\nURL https://www.wrenatlas.example/\nHost HTTPS://cdn.wrenatlas.example\n"
    )
    assert s.vendor is not None, s.skip_reason
    assert s.vendor["hosts"] == ["www.wrenatlas.example", "cdn.wrenatlas.example"]


def test_a_host_with_a_trailing_dot_and_a_port_is_proxied_without_the_dot() -> None:
    """kills: proxy/ezproxy_stanza.py:89 (host_of) — `v.rsplit(":", 1)[0].strip(".")` → without
    `.strip(".")`.
    `Host cdn.wrenatlas.example.:8443` (a fully-qualified name with its root dot, and a port) is
    the host cdn.wrenatlas.example; keeping the dot made it "not a hostname", so it was left out
    and the vendor's pages served from it broke."""
    s = _one(
        "Title Wren Atlas\nURL https://www.wrenatlas.example/\nHost cdn.wrenatlas.example.:8443\n"
    )
    assert s.vendor is not None, s.skip_reason
    assert s.vendor["hosts"] == ["www.wrenatlas.example", "cdn.wrenatlas.example"]
    assert s.warnings == ()


def test_a_form_login_with_a_form_name_is_not_reported_as_a_url_label() -> None:
    """kills: proxy/ezproxy_stanza.py:154 (_parse_url) — `if len(rest) > 1 and not d.form:` →
    `if len(rest) > 1:`.
    `URL -Form=post name url` is EZproxy's form login, the word before the URL being the form's
    name. Only an ordinary URL with a label sent patrons past EZproxy unproxied; telling the
    staff member a form login did so is false and hides the real review points."""
    s = _one(
        "Title Heron Archive\n"
        "URL -Form=post heronlogin https://login.heron.example/signin\n"
        "FormVariable username=westonlib-heron\n"
        "FormVariable password=Wr3n-D0nt-Leak\n"
        "Host login.heron.example\n"
    )
    assert s.vendor is not None, s.skip_reason
    assert s.vendor["auth"] == "shared-login"
    assert not any("label" in m.text for m in s.warnings), s.warnings


def test_a_url_with_only_a_password_in_it_is_reported_as_carrying_credentials() -> None:
    """kills: proxy/ezproxy_stanza.py:175 (_parse_url) — `if parts.username or parts.password:`
    → `if parts.username:`.
    `https://:Pl4in-Pass@…` (a password with an empty account name) is a credential in
    config.txt all the same: the staff member must be told it was removed, so they put it in the
    secret file rather than wonder why the vendor refuses the proxy; it is never written."""
    s = _one(
        "Title Wren Atlas\n"
        "URL https://:Pl4in-Pass@www.wrenatlas.example/start\n"
        "Host www.wrenatlas.example\n"
    )
    assert s.vendor is not None, s.skip_reason
    assert s.vendor["start_url"] == "https://www.wrenatlas.example/start"
    assert [m.text for m in s.warnings] == [
        "URL carried credentials; removed (never copied into the vendor file)"
    ]


def test_the_port_of_the_starting_url_is_kept_in_the_origin() -> None:
    """kills: proxy/ezproxy_stanza.py:186 (_parse_url) — `(f":{port}" if port else "")` → `""`.
    A database served on a non-standard port (https://…:8443/) must be reached on that port:
    dropping it sent every patron to port 443, where the vendor answers nothing or another
    site."""
    s = _one(
        "Title Wren Atlas\n"
        "URL https://www.wrenatlas.example:8443/start?db=1\n"
        "Host www.wrenatlas.example\n"
    )
    assert s.vendor is not None, s.skip_reason
    assert s.vendor["origin"] == "https://www.wrenatlas.example:8443"
    assert s.vendor["start_url"] == "https://www.wrenatlas.example:8443/start?db=1"


def test_a_skipped_url_with_an_at_in_its_password_prints_none_of_the_password() -> None:
    """kills: proxy/ezproxy_stanza.py:199 (_shown) — `rest.rsplit("@", 1)[1]` →
    `rest.split("@", 1)[1]`.
    A password may itself hold an `@`. The skip reason quotes the URL; cutting at the first `@`
    printed the rest of the password ("Heron@files…") into the summary, which is pasted into
    tickets and mails. Everything up to the last `@` must go."""
    s = _one(
        "Title Heron Files\n"
        "URL ftp://westonlib:Bl00m@Heron@files.heron.example/start\n"
        "Host files.heron.example\n"
    )
    assert s.status == "skipped"
    assert s.skip_reason == "URL 'ftp://files.heron.example/start' is not an http(s) URL"


def test_a_skipped_url_is_printed_without_its_fragment() -> None:
    """kills: proxy/ezproxy_stanza.py:200 (_shown) — `re.split(r"[?#]", …)` → `re.split(r"[?]",
    …)`.
    A fragment can carry an access token (`#token=…`) just as a query can; the skip reason in
    the summary quotes the URL only up to the path."""
    s = _one(
        "Title Heron Files\n"
        "URL ftp://files.heron.example/start#token=shhh-frag-key\n"
        "Host files.heron.example\n"
    )
    assert s.status == "skipped"
    assert "shhh-frag-key" not in s.skip_reason
    assert s.skip_reason == "URL 'ftp://files.heron.example/start' is not an http(s) URL"


def test_form_variables_without_form_get_no_warning_about_a_form_method() -> None:
    """kills: proxy/ezproxy_stanza.py:210 (_shared_login) — `if d.form not in ("post", ""):` →
    `if d.form != "post":`.
    FormVariable lines under an ordinary URL get one warning (treated as a form login). A second
    one about "-Form= login converted as a POSTed form" names a directive that is not there
    and sends the staff member looking for it."""
    s = _one(
        "Title Heron Archive\n"
        "URL https://login.heron.example/signin\n"
        "FormVariable username=westonlib-heron\n"
        "FormVariable password=Wr3n-D0nt-Leak\n"
        "Host login.heron.example\n"
    )
    assert s.vendor is not None, s.skip_reason
    texts = [m.text for m in s.warnings]
    assert "FormVariable without URL -Form=; treated as a form login" in texts
    assert not any("POSTed form" in t for t in texts), texts


def test_the_first_password_like_field_is_the_password_and_a_second_is_reported() -> None:
    """kills: proxy/ezproxy_stanza.py:224 (_shared_login) — `_PASSWORD_FIELD.search(name) and
    "password_field" not in table` → `_PASSWORD_FIELD.search(name)`.
    A form with `password` and then `pin`: the secret file holds one password, sent under
    password_field. Letting the later field take over silently sent it as `pin` and dropped
    `password`, so the shared login failed with no warning naming the second field."""
    s = _one(
        "Title Heron Archive\n"
        "URL -Form=post https://login.heron.example/signin\n"
        "FormVariable username=westonlib-heron\n"
        "FormVariable password=Wr3n-D0nt-Leak\n"
        "FormVariable pin=4471\n"
        "Host login.heron.example\n"
    )
    assert s.vendor is not None, s.skip_reason
    assert s.vendor["shared_login"]["password_field"] == "password"
    assert "config.txt:5: FormVariable pin looks like a credential; its value was not copied" in [
        str(m) for m in s.warnings
    ]


def test_a_form_variable_without_a_value_is_left_out_and_reported() -> None:
    """kills: proxy/ezproxy_stanza.py:230 (_shared_login) — `elif not eq:` → `elif False:`.
    `FormVariable lang` (no `=`) made EZproxy take the value from the starting URL; nothing here
    can, so the field is left out with a warning naming the line. Written as `lang = ""` it
    would post an empty value the vendor never saw from EZproxy, and no one is told."""
    s = _one(
        "Title Heron Archive\n"
        "URL -Form=post https://login.heron.example/signin\n"
        "FormVariable username=westonlib-heron\n"
        "FormVariable password=Wr3n-D0nt-Leak\n"
        "FormVariable lang\n"
        "Host login.heron.example\n"
    )
    assert s.vendor is not None, s.skip_reason
    assert "extra_fields" not in s.vendor["shared_login"]
    assert "config.txt:5: FormVariable lang took its value from the starting URL; left out" in [
        str(m) for m in s.warnings
    ]


def test_a_referer_given_as_a_full_https_url_is_written_as_it_is() -> None:
    """kills: proxy/ezproxy_stanza.py:264 (_referer_url) — `startswith(("http://", "https://"))`
    → `startswith(("http://",))`.
    A Referer that is already the whole registered URL (an https one, as most are now) is what
    the vendor compares exactly; wrapping it in `http://name:2048/referer/…` wrote a URL the
    vendor never registered, and every patron was refused."""
    s = _one(
        "Name ezproxy.weston.example\n"
        "Referer https://www.westonlibrary.example/databases\n"
        "Title Wren Atlas\n"
        "URL https://www.wrenatlas.example/\n"
        "Host www.wrenatlas.example\n"
    )
    assert s.vendor is not None, s.skip_reason
    assert s.vendor["auth"] == "referer"
    assert s.vendor["referer"] == "https://www.westonlibrary.example/databases"


def test_a_referer_vendor_without_loginport_gets_ezproxys_default_port_2048() -> None:
    """kills: proxy/ezproxy_stanza.py:269 (_referer_url) — `server.get("loginport", "2048")` →
    `server.get("loginport", "80")`.
    Without a LoginPort line EZproxy listened on 2048, so the referring URL the vendor registered
    is `http://name:2048/referer/code`; writing it without the port would not match the vendor's
    exact comparison and every patron would be refused."""
    s = _one(
        "Name ezproxy.weston.example\n"
        "Referer wren-7731\n"
        "Title Wren Atlas\n"
        "URL https://www.wrenatlas.example/\n"
        "Host www.wrenatlas.example\n"
    )
    assert s.vendor is not None, s.skip_reason
    assert s.vendor["referer"] == "http://ezproxy.weston.example:2048/referer/wren-7731"


def test_a_referer_over_a_form_login_stanza_is_reported_as_ignored() -> None:
    """kills: proxy/ezproxy_stanza.py:345 (finish_stanza) — the "Referer ignored" warning →
    `pass`.
    A Referer scope runs on over every later stanza; one that logs in with FormVariable lines is
    converted as a shared login, and the staff member must be told the Referer was not used (the
    vendor may have relied on both)."""
    s = _one(
        "Referer wren-7731\n"
        "Title Heron Archive\n"
        "URL -Form=post https://login.heron.example/signin\n"
        "FormVariable username=westonlib-heron\n"
        "FormVariable password=Wr3n-D0nt-Leak\n"
        "Host login.heron.example\n"
    )
    assert s.vendor is not None, s.skip_reason
    assert s.vendor["auth"] == "shared-login"
    assert "referer" not in s.vendor
    assert "config.txt:1: Referer ignored: this stanza logs in with FormVariable lines" in [
        str(m) for m in s.warnings
    ]


def test_a_find_with_nothing_to_find_writes_no_rewrite_rule() -> None:
    """kills: proxy/ezproxy_stanza.py:362 (finish_stanza) — `elif find.raw:` → `else:`.
    A bare `Find` line (its text deleted by an edit) has nothing to look for; written as a rule
    with an empty find, the proxy would insert the Replace text between every two characters of
    every page of the vendor."""
    s = _one(
        "Title Wren Atlas\n"
        "URL https://www.wrenatlas.example/\n"
        "Host www.wrenatlas.example\n"
        "Find\n"
        "Replace wren\n"
    )
    assert s.vendor is not None, s.skip_reason
    assert "rewrite" not in s.vendor


def _extra_fields(field: str) -> dict[str, str]:
    s = _one(
        "Title Heron Archive\n"
        "URL -Form=post https://login.heron.example/signin\n"
        "FormVariable username=westonlib-heron\n"
        "FormVariable password=Wr3n-D0nt-Leak\n"
        f"FormVariable {field}\n"
        "Host login.heron.example\n"
    )
    assert s.vendor is not None, s.skip_reason
    return s.vendor["shared_login"].get("extra_fields", {})


def test_a_form_field_with_pin_inside_its_name_is_copied() -> None:
    """kills: proxy/ezproxy_stanza.py:35 (_PASSWORD_FIELD) — `^pin|pin$` → `pin`.
    Only a name that starts or ends with "pin" is a PIN; `skipintro=1` (s-kip-in-tro) is an
    ordinary form field the vendor's login needs, and taking it for a credential left it out so
    the shared login landed on the intro page instead of the database."""
    assert _extra_fields("skipintro=1") == {"skipintro": "1"}


def test_an_authtype_form_field_is_copied() -> None:
    """kills: proxy/ezproxy_stanza.py:37 (_SECRET_FIELD) — `auth(?!type)` → `auth`.
    `authtype=library` says which login the vendor should use; it is no secret, and leaving it
    out made the vendor try its personal-account login with the library's shared account."""
    assert _extra_fields("authtype=library") == {"authtype": "library"}


def test_a_form_login_without_form_variables_is_reported() -> None:
    """kills: proxy/ezproxy_stanza.py:341 (finish_stanza) — `if not d.form_vars:` → `if False:`.
    `URL -Form=post …` with no FormVariable lines (they were in an IncludeFile not copied along,
    or deleted) becomes a shared login with no fields: the staff member must be told to review
    the login, on the URL line."""
    s = _one(
        "Title Heron Archive\n"
        "URL -Form=post https://login.heron.example/signin\n"
        "Host login.heron.example\n"
    )
    assert s.vendor is not None, s.skip_reason
    assert s.vendor["auth"] == "shared-login"
    assert "config.txt:2: URL -Form= without FormVariable lines; review the login" in [
        str(m) for m in s.warnings
    ]


def test_a_long_title_cut_at_a_word_gap_gives_an_id_without_a_trailing_hyphen() -> None:
    """kills: proxy/ezproxy.py:82 (_slug) — `[:56].rstrip("-")` → `[:56]`.
    The vendor id (and file name) of a long title is cut to 56 characters; cut just after a word
    it must not end in a hyphen ("…-marshes-.toml"), which is no valid vendor id and looks like
    a typing slip in every report."""
    s = _one(
        "Title " + "Marshes " * 8 + "\nURL https://www.marshes.example/\nHost www.marshes.example\n"
    )
    assert s.vendor_id == "-".join(["marshes"] * 7)
    assert s.vendor is not None and s.vendor["id"] == s.vendor_id


def test_option_cookie_ends_the_cookie_scope_of_the_stanzas_before_it() -> None:
    """kills: proxy/ezproxy.py:111 (_scope_line) — `scope.cookie = None if opt == "cookie" else
    ln` → `scope.cookie = ln`.
    `Option Cookie` is EZproxy's default and ends an `Option DomainCookieOnly` scope: stanzas
    after it had nothing special, so they get no cookie note (a note on every later vendor
    buries the ones that matter)."""
    first, second = convert(
        "Option DomainCookieOnly\n"
        "Title Wren Atlas\n"
        "URL https://www.wrenatlas.example/\n"
        "Host www.wrenatlas.example\n"
        "Option Cookie\n"
        "Title Heron Archive\n"
        "URL https://www.heronarchive.example/\n"
        "Host www.heronarchive.example\n"
    ).stanzas
    assert [str(m) for m in first.notes] == [
        "config.txt:1: Option DomainCookieOnly: vendor cookies always live in the proxy's "
        "per-session jar"
    ]
    assert second.notes == ()
    assert second.status == "converted"


def test_an_option_inside_a_stanza_does_not_repeat_the_adduserheader_refusal() -> None:
    """kills: proxy/ezproxy.py:123 (_apply_scope) — `… and scope.user_header.where not in seen`
    → without it.
    An Option inside a stanza re-applies the running scope to it; the AddUserHeader refusal
    already given must not be given again, or the summary lists the same line twice and the
    staff member thinks there are two headers to remove."""
    s = _one(
        "AddUserHeader X-Patron-Name\n"
        "Title Wren Atlas\n"
        "URL https://www.wrenatlas.example/\n"
        "Option DomainCookieOnly\n"
        "Host www.wrenatlas.example\n"
    )
    assert [m.where for m in s.warnings].count("config.txt:1") == 1
    assert [m.where for m in s.notes] == ["config.txt:4"]


def test_an_option_before_a_neverproxy_and_a_title_is_for_the_next_stanza_only() -> None:
    """kills: proxy/ezproxy.py:141 (_inside) — `"neverproxy"` dropped from the scope directives
    skipped.
    NeverProxy is not part of a stanza: an `Option DomainCookieOnly` followed by a NeverProxy
    and then a Title opens the scope for the next stanza. Taking the NeverProxy for a line of
    the stanza above put the Option's note on a vendor it never applied to."""
    first, second = convert(
        "Title Wren Atlas\n"
        "URL https://www.wrenatlas.example/\n"
        "Host www.wrenatlas.example\n"
        "Option DomainCookieOnly\n"
        "NeverProxy static.heronarchive.example\n"
        "Title Heron Archive\n"
        "URL https://www.heronarchive.example/\n"
        "Domain heronarchive.example\n"
    ).stanzas
    assert first.notes == ()
    assert [m.where for m in second.notes] == ["config.txt:4"]


def test_title_options_are_noted_and_left_out_of_the_title() -> None:
    """kills: proxy/ezproxy.py:175 (convert) — the "Title options" note → `pass`.
    `Title -Hide Wren Atlas` hid the database from EZproxy's menu; here it will be listed, so
    the staff member must be told the option was not carried over."""
    s = _one(
        "Title -Hide Wren Atlas\nURL https://www.wrenatlas.example/\nHost www.wrenatlas.example\n"
    )
    assert s.title == "Wren Atlas"
    assert [str(m) for m in s.notes] == [
        "config.txt:1: Title options (e.g. -Hide) have no equivalent; the title is kept"
    ]


def test_only_the_first_word_of_loginport_goes_into_the_referring_url() -> None:
    """kills: proxy/ezproxy.py:182 (convert) — `ln.value.split()[0] if ln.value else ""` →
    `ln.value`.
    Anything after the port on a LoginPort line (an option, a stray word) is not part of the
    port; taking the whole value wrote a referring URL with a space in it, which is not the URL
    EZproxy sent and the vendor registered."""
    s = _one(
        "Name ezproxy.weston.example\n"
        "LoginPort 8080 -Virtual\n"
        "Referer wren-7731\n"
        "Title Wren Atlas\n"
        "URL https://www.wrenatlas.example/\n"
        "Host www.wrenatlas.example\n"
    )
    assert s.vendor is not None, s.skip_reason
    assert s.vendor["referer"] == "http://ezproxy.weston.example:8080/referer/wren-7731"


def test_the_same_neverproxy_twice_is_written_once() -> None:
    """kills: proxy/ezproxy.py:275 (_attach_never_proxy) — `… if p not in written]` →
    `… if True]`.
    `NeverProxy static.heron.example` and a later `NeverProxy *.static.heron.example` (or the same
    line in two included files) both stand for `*.static.heron.example`: the vendor file lists
    each entry once, not a doubled list the staff member has to tidy by hand."""
    s = _one(
        "NeverProxy static.heronarchive.example\n"
        "Title Heron Archive\n"
        "URL https://www.heronarchive.example/\n"
        "Domain heronarchive.example\n"
        "NeverProxy *.static.heronarchive.example\n"
    )
    assert s.vendor is not None, s.skip_reason
    assert s.vendor["never_proxy"] == [
        "static.heronarchive.example",
        "*.static.heronarchive.example",
    ]


def test_a_neverproxy_taken_by_an_earlier_vendor_is_not_reported_as_unused() -> None:
    """kills: proxy/ezproxy.py:278 (_attach_never_proxy) — `attached = attached or bool(…)` →
    `attached = bool(…)`.
    A NeverProxy under the first vendor's hosts, with other vendors after it: it was attached,
    so the summary must not also say "no imported vendor's hosts cover it" (which sends the
    staff member to add it by hand a second time)."""
    result = convert(
        "NeverProxy static.heronarchive.example\n"
        "Title Heron Archive\n"
        "URL https://www.heronarchive.example/\n"
        "Domain heronarchive.example\n"
        "Title Wren Atlas\n"
        "URL https://www.wrenatlas.example/\n"
        "Host www.wrenatlas.example\n"
    )
    heron, wren = result.stanzas
    assert heron.vendor is not None and "never_proxy" in heron.vendor
    assert wren.vendor is not None and "never_proxy" not in wren.vendor
    assert result.warnings == ()


def test_a_password_holding_an_at_and_a_slash_is_refused_not_written() -> None:
    """From proxy/ezproxy_stanza.py:167 (_parse_url) — `if parts.username is None and "@" in url
    and …` → `if "@" in url and …` survived, and is closer to right than the code.
    The password `Bl00m@zz/w8` written unencoded in `https://westonlib:Bl00m@zz/w8@www.heron…`:
    urlsplit takes `westonlib:Bl00m` for the userinfo, `zz` (the middle of the password) for the
    host and `/w8@www.heron.example/start` (its end) for the path. As a userinfo was found, the
    check for an @ outside the host is skipped: the vendor file gets origin `https://zz`, host
    `zz` and a start_url holding `w8`, while the warning says the credentials were "never copied
    into the vendor file". The stanza must be refused as the same URL without `westonlib:` is.
    Fixed the same day: an @ after the host, with a userinfo or on a dotless host, is refused."""
    s = _one(
        "Title Heron Archive\n"
        "URL https://westonlib:Bl00m@zz/w8@www.heron.example/start\n"
        "Host www.heron.example\n"
    )
    assert s.status == "skipped", s.vendor
    assert s.vendor is None
    assert "Bl00m" not in s.skip_reason and "w8" not in s.skip_reason


def test_a_password_holding_an_at_and_a_slash_is_refused_also_on_a_dotted_fake_host() -> None:
    """The same password with a dot in its middle part (`Bl00m@zz.x/w8`): the host urlsplit
    finds, `zz.x`, looks like a real one, so the dotless-host test alone would let it through.
    A userinfo together with an @ after the host is the sign: the stanza is refused, and the
    summary prints none of the password."""
    s = _one(
        "Title Heron Archive\n"
        "URL https://westonlib:Bl00m@zz.x/w8@www.heron.example/start\n"
        "Host www.heron.example\n"
    )
    assert s.status == "skipped", s.vendor
    assert s.vendor is None
    assert "an @ outside its host" in s.skip_reason
    assert "Bl00m" not in s.skip_reason and "w8" not in s.skip_reason


def test_an_account_in_an_ordinary_url_is_still_removed_and_the_stanza_converted() -> None:
    """The fix above must not refuse an ordinary `https://acct:pw@www.heron.example/start`:
    there the @ is the userinfo's own, nothing follows the host but the path."""
    s = _one("Title Heron Archive\nURL https://westonlib:Bl00m@www.heron.example/start\n")
    assert s.vendor is not None, s.skip_reason
    assert s.vendor["origin"] == "https://www.heron.example"
    assert "Bl00m" not in repr(s.vendor) and "westonlib" not in repr(s.vendor)
