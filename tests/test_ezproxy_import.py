"""import-ezproxy: an EZproxy config.txt becomes vendor files that load, route and leak nothing."""

from __future__ import annotations

import io
import tomllib
from pathlib import Path

import pytest

from proxy.cli import load
from proxy.config import Config, VendorConfig, check_vendor, check_vendors_together, load_vendor
from proxy.errors import Problem
from proxy.ezproxy import PATRON_DATA, ImportResult, StanzaResult, convert, run_import
from proxy.hosts import HostMap
from tests.test_check_config_cross import PROXY

DATA = Path(__file__).parent / "data" / "ezproxy"
CONFIG = DATA / "config.txt"
# Every credential-like value in the test config; none may reach an output file or the summary.
SECRETS = (
    "westonlib-ezp",
    "Pl3aseD0ntLeak!",
    "k-9931-wren-hidden",
    "s1234567",
    "Bl00mingHeron",
    "shhh-this-is-a-key",
    "accountid=48511",
)


def line_of(text: str, file: Path = CONFIG) -> str:
    """'config.txt:N' for the first line of `file` that contains `text`."""
    for n, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if text in line:
            return f"{file.relative_to(DATA)}:{n}"
    raise AssertionError(f"{text!r} not in {file}")


def run(out: Path, *, force: bool = False, config: Path = CONFIG) -> tuple[int, str]:
    buf = io.StringIO()
    status = run_import(config, out, stdout=buf, force=force)
    return status, buf.getvalue()


def load_all(out: Path) -> dict[str, VendorConfig]:
    problems: list[Problem] = []
    vendors = {}
    for path in sorted(out.glob("*.toml")):
        v = load_vendor(path, problems)
        assert v is not None, problems
        vendors[v.id] = v
    assert problems == []
    return vendors


@pytest.fixture
def out(tmp_path: Path) -> Path:
    status, _ = run(tmp_path / "vendors")
    assert status == 0
    return tmp_path / "vendors"


@pytest.fixture
def result() -> ImportResult:
    return convert(CONFIG)


def stanza(result: ImportResult, vendor_id: str) -> StanzaResult:
    return next(s for s in result.stanzas if s.vendor_id == vendor_id)


def test_every_written_file_loads_without_problems(out: Path) -> None:
    problems: list[Problem] = []
    files = sorted(out.glob("*.toml"))
    assert len(files) == 12
    for path in files:
        assert load_vendor(path, problems) is not None
    assert problems == []


def test_written_vendors_pass_the_vendor_checks_once_secrets_exist(out: Path) -> None:
    """The same checks check-config runs, after the admin creates the secret files."""
    secrets = out / "secrets"
    secrets.mkdir()
    for which in ("username", "password"):
        p = secrets / f"consumer-reports-online-{which}"
        p.write_text("synthetic\n")
        p.chmod(0o600)
    vendors = tuple(load_all(out).values())
    cfg = Config(path=out.parent / "proxy.toml", vendors=vendors)
    problems: list[Problem] = []
    for v in vendors:
        check_vendor(v, cfg, problems)
    check_vendors_together(cfg, problems)
    assert problems == []


def test_each_vendor_proxies_its_own_hosts(out: Path) -> None:
    vendors = load_all(out).values()
    hosts = HostMap.build(
        public_scheme="https",
        public_host="proxy.westonlibrary.example",
        public_port=None,
        vendor_hosts=[(v.id, v.hosts) for v in vendors],
        never_proxy=[p for v in vendors for p in v.never_proxy],
    )
    expected = {
        "www.sciencedirect.example": "sciencedirect-elsevier",
        "cdn.els-cdn.example": "sciencedirect-elsevier",
        "sdfestaticassets-us-east-1.sciencedirectassets.example": "sciencedirect-elsevier",
        "www.scopus.example": "sciencedirect-elsevier",
        "www.jstor.example": "jstor",
        "pages.jstor.example": "jstor",
        "static.ithaka.example": "jstor",
        "jstor-assets.example": "jstor",
        "search.ebscohost.example": "ebscohost-research-databases",
        "go.galegroup.example": "gale-onefile-news",
        "secure.consumerreports.example": "consumer-reports-online",
        "connect.mangolanguages.example": "mango-languages",
        "www.newsbank.example": "newspaper-archive",
        "newspaperarchive.example": "newspaper-archive-2",
        "www.proquest.example": "hartford-courant-proquest",
        "www.hoopladigital.example": "hoopla-digital-residents-only",
        "research.valueline.example": "value-line-research-center",
        "www.learningexpresshub.example": None,  # its stanza was skipped
        "www.example": None,
    }
    assert {h: hosts.vendor_for_host(h) for h in expected} == expected


def test_neverproxy_lands_in_never_proxy(out: Path) -> None:
    vendors = load_all(out)
    assert vendors["sciencedirect-elsevier"].never_proxy == (
        "pendo-static.sciencedirect.example",
        "*.pendo-static.sciencedirect.example",
    )
    assert vendors["value-line-research-center"].never_proxy == ("*.static.valueline.example",)


def test_global_neverproxy_goes_to_the_vendor_that_covers_it(out: Path) -> None:
    assert load_all(out)["jstor"].never_proxy == ("ads.jstor.example", "*.ads.jstor.example")


def test_ids_are_stable_across_runs(tmp_path: Path) -> None:
    first = [s.vendor_id for s in convert(CONFIG).stanzas]
    second = [s.vendor_id for s in convert(CONFIG).stanzas]
    assert first == second
    run(tmp_path / "a")
    run(tmp_path / "b")
    names_a = sorted(p.name for p in (tmp_path / "a").glob("*.toml"))
    assert names_a == sorted(p.name for p in (tmp_path / "b").glob("*.toml"))


def test_ids_are_unique_and_duplicate_titles_get_a_suffix(result: ImportResult) -> None:
    ids = [s.vendor_id for s in result.stanzas]
    assert len(ids) == len(set(ids))
    titled = [s.vendor_id for s in result.stanzas if s.title == "Newspaper Archive"]
    assert titled == ["newspaper-archive", "newspaper-archive-2"]


def test_file_name_is_the_id(out: Path) -> None:
    for path in out.glob("*.toml"):
        assert load_all(out)[path.stem].file == str(path)


def test_add_user_header_is_refused_with_a_warning_naming_its_line(
    result: ImportResult, out: Path
) -> None:
    mango = stanza(result, "mango-languages")
    assert mango.status == "converted-with-warnings"
    refused = [m for m in mango.warnings if m.text.startswith("AddUserHeader")]
    assert [m.where for m in refused] == [line_of("AddUserHeader X-Library-User")]
    assert PATRON_DATA in refused[0].text
    assert "X-Library-User" not in (out / "mango-languages.toml").read_text().split("\n\n", 1)[1]


def test_add_user_header_scope_ends_at_the_bare_directive(result: ImportResult) -> None:
    later = stanza(result, "ancestry-library-edition")
    assert not any("AddUserHeader" in m.text for m in later.warnings)
    before = stanza(result, "consumer-reports-online")
    assert not any("AddUserHeader" in m.text for m in before.warnings)


def test_encryptvar_is_refused_with_a_warning_naming_its_line(result: ImportResult) -> None:
    mango = stanza(result, "mango-languages")
    assert any(m.where == line_of("EncryptVar u") and PATRON_DATA in m.text for m in mango.warnings)


def test_x_forwarded_for_is_refused_for_the_stanzas_in_its_scope(result: ImportResult) -> None:
    ancestry = stanza(result, "ancestry-library-edition")
    assert any(m.where == line_of("Option X-Forwarded-For") for m in ancestry.warnings)
    after = stanza(result, "hoopla-digital-residents-only")
    assert not any("X-Forwarded-For" in m.text for m in after.warnings)


def test_a_starting_url_with_the_patron_username_skips_the_stanza(
    result: ImportResult, out: Path
) -> None:
    lel = stanza(result, "learningexpress-library")
    assert lel.status == "skipped"
    assert PATRON_DATA in lel.skip_reason
    assert not (out / "learningexpress-library.toml").exists()


def test_no_secret_value_reaches_any_output_file_or_the_summary(tmp_path: Path) -> None:
    status, stdout = run(tmp_path / "vendors")
    assert status == 0
    written = "".join(p.read_text() for p in (tmp_path / "vendors").rglob("*") if p.is_file())
    for secret in SECRETS:
        assert secret not in written
        assert secret not in stdout


def test_formvariable_becomes_a_shared_login_with_secret_files(out: Path) -> None:
    cr = load_all(out)["consumer-reports-online"]
    assert cr.auth == "shared-login"
    sl = cr.shared_login
    assert sl is not None
    assert (sl.method, sl.login_url) == ("form", "https://secure.consumerreports.example/ec/login")
    assert (sl.username_field, sl.password_field) == ("userName", "password")
    assert sl.extra_fields == {"setPersistentCookie": "false", "target": "/cro/index.htm"}
    assert sl.username_file == "secrets/consumer-reports-online-username"
    assert sl.password_file == "secrets/consumer-reports-online-password"


def test_the_summary_tells_where_to_put_the_shared_login_secrets(tmp_path: Path) -> None:
    _, stdout = run(tmp_path / "vendors")
    assert "secrets/consumer-reports-online-password" in stdout


def test_referer_becomes_referer_auth_with_the_registered_url(out: Path) -> None:
    gale = load_all(out)["gale-onefile-news"]
    assert gale.auth == "referer"
    assert gale.referer == "http://ezproxy.westonlibrary.example:2048/referer/gale-weston-7Q2x"
    assert (out / "gale-onefile-news.toml").stat().st_mode & 0o077 == 0


def test_referer_scope_ends_at_a_bare_referer(out: Path) -> None:
    assert load_all(out)["consumer-reports-online"].referer == ""


def test_summary_counts_match_the_results(tmp_path: Path, result: ImportResult) -> None:
    _, stdout = run(tmp_path / "vendors")
    counts = {
        "converted": len(result.with_status("converted")),
        "converted with warnings": len(result.with_status("converted-with-warnings")),
        "skipped": len(result.with_status("skipped")),
    }
    assert counts == {"converted": 5, "converted with warnings": 7, "skipped": 2}
    for label, n in counts.items():
        assert f"  {label}: {n}\n" in stdout


def test_summary_lists_skipped_stanzas_with_their_lines(tmp_path: Path) -> None:
    _, stdout = run(tmp_path / "vendors")
    assert line_of("Title LearningExpress Library") in stdout
    assert "'Remote access help': no URL line" in stdout


def test_includefile_stanzas_are_imported_from_the_included_file(result: ImportResult) -> None:
    included = DATA / "stanzas" / "newspapers.txt"
    courant = stanza(result, "hartford-courant-proquest")
    assert f"{courant.source}:{courant.first_line}" == line_of("Title Hartford", included)
    assert courant.vendor is not None


def test_an_include_cycle_is_reported_and_not_followed(result: ImportResult) -> None:
    loop = DATA / "stanzas" / "loop.txt"
    assert [m.where for m in result.warnings if "cycle" in m.text] == [line_of("IncludeFile", loop)]
    assert sum(s.title == "Hartford Courant (ProQuest)" for s in result.stanzas) == 1


def test_group_maps_to_eligibility_until_the_next_group(out: Path) -> None:
    vendors = load_all(out)
    assert vendors["hoopla-digital-residents-only"].eligibility.groups == ("Residents",)
    assert vendors["newspaper-archive-2"].eligibility.groups == ("Residents",)


def test_group_default_means_every_patron(out: Path) -> None:
    vendors = load_all(out)
    assert vendors["jstor"].eligibility.groups == ()
    assert vendors["value-line-research-center"].eligibility.groups == ()  # Default+Staff


def test_find_replace_pairs_become_rewrite_rules_for_html_and_js(out: Path) -> None:
    rules = load_all(out)["sciencedirect-elsevier"].rewrite
    assert len(rules) == 4  # the fifth uses ^P host^, which has no literal equivalent
    assert rules[2].find == 'var rootUrl = "//www.sciencedirect.example";'
    assert set(rules[0].types) == {
        "text/html",
        "application/javascript",
        "text/javascript",
        "application/x-javascript",
    }


def test_an_ezproxy_substitution_in_replace_is_left_out_with_a_warning(
    result: ImportResult,
) -> None:
    sd = stanza(result, "sciencedirect-elsevier")
    assert [m.where for m in sd.warnings] == [line_of("Replace href=")]


def test_account_and_password_are_removed_from_the_starting_url(out: Path) -> None:
    ebsco = load_all(out)["ebscohost-research-databases"]
    assert ebsco.start_url == (
        "https://search.ebscohost.example/login.aspx?authtype=ip,uid&profile=ehost"
    )


def test_every_file_starts_with_the_review_comment(out: Path) -> None:
    jstor = (out / "jstor.toml").read_text().splitlines()[0]
    assert jstor.startswith(
        f"# imported from EZproxy config.txt lines {line_of('t JSTOR').split(':')[1]}"
    )
    assert jstor.endswith("review [contract] before going live")


def test_an_existing_file_is_not_overwritten_without_force(tmp_path: Path) -> None:
    out = tmp_path / "vendors"
    out.mkdir()
    (out / "jstor.toml").write_text("# the library's own edits\n")
    status, stdout = run(out)
    assert status == 1
    assert "jstor.toml" in stdout and "--force" in stdout
    assert (out / "jstor.toml").read_text() == "# the library's own edits\n"
    assert [p.name for p in out.iterdir()] == ["jstor.toml"]


def test_force_overwrites_existing_files(tmp_path: Path) -> None:
    out = tmp_path / "vendors"
    out.mkdir()
    (out / "jstor.toml").write_text("# old\n")
    status, _ = run(out, force=True)
    assert status == 0
    assert load_all(out)["jstor"].title == "JSTOR"


def test_an_unreadable_config_exits_1_naming_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "config.txt"
    status, stdout = run(tmp_path / "vendors", config=missing)
    assert status == 1
    assert str(missing) in stdout
    assert not (tmp_path / "vendors").exists()


def test_a_config_without_stanzas_exits_1(tmp_path: Path) -> None:
    cfg = tmp_path / "config.txt"
    cfg.write_text("Name ezproxy.example\nOption ProxyByHostname\n# no databases\n")
    status, stdout = run(tmp_path / "vendors", config=cfg)
    assert status == 1
    assert "no database stanza" in stdout


def test_directives_are_case_insensitive_and_may_be_abbreviated() -> None:
    text = "tItLe Demo DB\nU https://www.demo.example/\nhj cdn.demo.example\nDJ Demo.Example\n"
    (s,) = convert(text).stanzas
    assert s.vendor is not None
    assert s.vendor["hosts"] == [
        "www.demo.example",
        "cdn.demo.example",
        "demo.example",
        "*.demo.example",
    ]


def test_cookie_pass_through_is_refused() -> None:
    text = "Option CookiePassThrough\nTitle Demo\nURL https://www.demo.example/\nOption Cookie\n"
    (s,) = convert(text).stanzas
    assert s.status == "converted-with-warnings"
    assert "CookiePassThrough refused" in s.warnings[0].text


def test_a_domain_on_a_public_suffix_is_left_out() -> None:
    (s,) = convert("Title Demo\nURL https://www.demo.co.uk/\nD co.uk\n").stanzas
    assert s.vendor is not None and s.vendor["hosts"] == ["www.demo.co.uk"]
    assert "public suffix" in s.warnings[0].text


def test_a_host_claimed_by_an_earlier_stanza_is_not_claimed_twice() -> None:
    text = (
        "Title First\nURL https://a.demo.example/\nD demo.example\n"
        "Title Second\nURL https://b.other.example/\nD demo.example\n"
        "Title Third\nURL https://a.demo.example/x\n"
    )
    _, second, third = convert(text).stanzas
    assert second.vendor is not None and second.vendor["hosts"] == ["b.other.example"]
    assert third.status == "skipped" and "already proxied" in third.skip_reason


def test_a_form_url_without_formvariables_still_converts_with_a_warning() -> None:
    (s,) = convert("Title Demo\nURL -Form=post demo https://www.demo.example/login\n").stanzas
    assert s.status == "converted-with-warnings"
    assert s.vendor is not None and s.vendor["shared_login"]["method"] == "form"


def test_a_formvariable_carrying_the_patron_username_is_refused() -> None:
    text = (
        "Title Demo\nURL -Form=post demo https://www.demo.example/login\n"
        "FormVariable patron=^u\nFormVariable user=lib\nFormVariable pass=pw\n"
    )
    (s,) = convert(text).stanzas
    assert [m.where for m in s.warnings if PATRON_DATA in m.text] == ["config.txt:3"]
    assert s.vendor is not None and "^u" not in str(s.vendor)


def test_a_referer_without_a_name_directive_asks_for_the_full_url() -> None:
    text = "Referer abc123\nTitle Demo\nURL https://www.demo.example/\nReferer\n"
    (s,) = convert(text).stanzas
    assert s.vendor is not None and s.vendor["referer"] == "abc123"
    assert any("full referring URL" in m.text for m in s.warnings)


@pytest.mark.parametrize(
    "url", ["http://www.typo-db.com:80a/", "http://www.typo-db.com:99999/", "http://[typo-db.com/"]
)
def test_a_url_urllib_cannot_read_skips_its_stanza_and_the_rest_is_imported(
    tmp_path: Path, url: str
) -> None:
    """A port typo in one URL line used to abort the whole import with a traceback."""
    src = tmp_path / "config.txt"
    src.write_text(
        "Title Good Database\nURL https://www.good-db.com/start\nDomain good-db.com\n\n"
        f"Title Typo Database\nURL {url}\nDomain typo-db.com\n"
    )
    status, stdout = run(tmp_path / "vendors", config=src)
    assert status == 0, stdout
    assert (tmp_path / "vendors" / "good-database.toml").exists()
    assert not (tmp_path / "vendors" / "typo-database.toml").exists()
    assert f"config.txt:5-7 'Typo Database': URL '{url}' cannot be used" in stdout


def host_map(result: ImportResult) -> HostMap:
    vendors = [s.vendor for s in result.stanzas if s.vendor]
    return HostMap.build(
        public_scheme="https",
        public_host="proxy.westonlibrary.example",
        public_port=None,
        vendor_hosts=[(v["id"], v["hosts"]) for v in vendors],
        never_proxy=[p for v in vendors for p in v.get("never_proxy", [])],
    )


def import_text(tmp_path: Path, text: str) -> tuple[int, str]:
    """run_import on `text` as tmp_path/config.txt, writing to tmp_path/vendors."""
    src = tmp_path / "config.txt"
    src.write_text(text, encoding="utf-8")
    return run(tmp_path / "vendors", config=src)


def check_config(tmp_path: Path) -> str:
    """What check-config says about tmp_path/vendors ('' when it accepts them)."""
    (tmp_path / "patrons.toml").write_text("")
    (tmp_path / "proxy.toml").write_text(PROXY)
    buf = io.StringIO()
    return "" if load(str(tmp_path / "proxy.toml"), buf) is not None else buf.getvalue()


@pytest.mark.parametrize("where", ["before the stanza", "inside the stanza"])
def test_neverproxy_without_a_wildcard_also_covers_subdomains(where: str) -> None:
    """OCLC: without `*`, NeverProxy matches the host and any host ending in .host."""
    never = "NeverProxy ads.jstor.example\n"
    stanza_text = "Title JSTOR\nURL https://www.jstor.example/\nDomain jstor.example\n"
    text = never + stanza_text if where == "before the stanza" else stanza_text + never
    result = convert(text)
    (s,) = result.stanzas
    assert s.vendor is not None
    assert s.vendor["never_proxy"] == ["ads.jstor.example", "*.ads.jstor.example"]
    hosts = host_map(result)
    assert hosts.vendor_for_host("ads.jstor.example") is None
    assert hosts.vendor_for_host("cdn.ads.jstor.example") is None
    assert hosts.vendor_for_host("www.jstor.example") == "jstor"


def test_a_neverproxy_over_a_parent_domain_keeps_the_hosts_it_covers_unproxied(
    tmp_path: Path,
) -> None:
    """The vendor's exact hosts under it become its never_proxy entries, with a warning."""
    text = (
        "NeverProxy jstor.example\nTitle JSTOR\nURL https://search.jstor.example/\n"
        "Host www.jstor.example\n"
    )
    (s,) = convert(text).stanzas
    assert s.vendor is not None
    assert s.vendor["never_proxy"] == ["search.jstor.example", "www.jstor.example"]
    assert [m.where for m in s.warnings] == ["config.txt:1"]
    assert "never proxied" in s.warnings[0].text
    status, stdout = import_text(tmp_path, text)
    assert status == 0, stdout
    assert check_config(tmp_path) == ""


def test_a_wildcard_neverproxy_over_exact_hosts_passes_check_config(tmp_path: Path) -> None:
    """`*.jstor.example` is not under exact hosts as check-config tests it: the hosts it covers
    are written instead, and jstor.example itself stays proxied."""
    text = (
        "NeverProxy *.jstor.example\nTitle JSTOR\nURL https://jstor.example/\n"
        "Host www.jstor.example\n"
    )
    result = convert(text)
    assert result.stanzas[0].vendor is not None
    assert result.stanzas[0].vendor["never_proxy"] == ["www.jstor.example"]
    assert host_map(result).vendor_for_host("jstor.example") == "jstor"
    status, stdout = import_text(tmp_path, text)
    assert status == 0, stdout
    assert check_config(tmp_path) == ""


def test_a_neverproxy_with_an_inner_wildcard_is_reported_not_written() -> None:
    """EZproxy's `*ads.jstor.example` (* = any characters) has no never_proxy equivalent."""
    result = convert(
        "NeverProxy *ads.jstor.example\nTitle JSTOR\nURL https://www.jstor.example/\n"
        "Domain jstor.example\n"
    )
    (s,) = result.stanzas
    assert s.vendor is not None and "never_proxy" not in s.vendor
    assert [m.where for m in result.warnings] == ["config.txt:1"]
    assert "*ads.jstor.example" in result.warnings[0].text


def test_a_neverproxy_no_vendor_covers_is_reported_with_its_line() -> None:
    result = convert("NeverProxy ads.other.example\nTitle A\nURL https://www.a.example/\n")
    assert [str(m) for m in result.warnings] == [
        "config.txt:1: NeverProxy ads.other.example: no imported vendor's hosts cover it"
    ]


def test_neverproxy_in_a_skipped_stanza_still_applies() -> None:
    """NeverProxy is position-independent (OCLC); skipping the stanza it sits in keeps it."""
    result = convert(
        "Title Patron URL DB\nURL https://a.example/start?user=^u\nNeverProxy shop.b.example\n"
        "Title B\nURL https://www.b.example/\nDomain b.example\n"
    )
    assert result.stanzas[0].status == "skipped"
    assert host_map(result).vendor_for_host("shop.b.example") is None


def test_neverproxy_inside_a_stanza_goes_to_the_vendor_whose_hosts_cover_it(
    tmp_path: Path,
) -> None:
    text = (
        "Title A\nURL https://www.a.example/\nDomain a.example\nNeverProxy shop.b.example\n"
        "Title B\nURL https://www.b.example/\nDomain b.example\n"
    )
    a, b = convert(text).stanzas
    assert a.vendor is not None and "never_proxy" not in a.vendor
    assert b.vendor is not None
    assert b.vendor["never_proxy"] == ["shop.b.example", "*.shop.b.example"]
    status, stdout = import_text(tmp_path, text)
    assert status == 0, stdout
    assert check_config(tmp_path) == ""


def test_an_exact_host_on_shared_hosting_is_kept() -> None:
    """Only a `*.` pattern over a public suffix is left out; check-config accepts exact hosts."""
    (s,) = convert("Title A\nURL https://www.a.example/\nHJ s3.amazonaws.com\n").stanzas
    assert s.vendor is not None
    assert s.vendor["hosts"] == ["www.a.example", "s3.amazonaws.com"]
    assert s.warnings == ()


def test_a_starting_url_on_shared_hosting_converts() -> None:
    (s,) = convert("Title A\nURL https://s3.amazonaws.com/vendor-bucket/index.html\n").stanzas
    assert s.vendor is not None and s.vendor["hosts"] == ["s3.amazonaws.com"]


@pytest.mark.parametrize("url", ["https://my_db.example.com/", "https://www.bücher.example/"])
def test_a_stanza_skipped_for_its_url_host_says_it_is_not_a_hostname(
    tmp_path: Path, url: str
) -> None:
    """Not "already proxied by another vendor": nothing else can have proxied it."""
    status, stdout = import_text(
        tmp_path, f"Title A\nURL {url}\nTitle B\nURL https://www.b.example/\n"
    )
    assert status == 0, stdout
    assert "config.txt:1-2 'A': its host" in stdout
    assert "is not a valid hostname" in stdout
    assert "already proxied" not in stdout


@pytest.mark.parametrize("line", ["URL\u00a0https://www.a.example/", "Host\u00a0cdn.a.example"])
def test_a_non_breaking_space_after_a_directive_is_read_as_a_space(
    tmp_path: Path, line: str
) -> None:
    """Stanzas pasted from web pages carry U+00A0; the import died with a bare AssertionError."""
    text = f"Title A\n{line}\n"
    if line.startswith("Host"):
        text = f"Title A\nURL https://www.a.example/\n{line}\n"
    status, stdout = import_text(tmp_path, text)
    assert status == 0, stdout
    assert load_all(tmp_path / "vendors")["a"].hosts[0] == "www.a.example"
    if line.startswith("Host"):
        assert load_all(tmp_path / "vendors")["a"].hosts == ("www.a.example", "cdn.a.example")


def test_an_ezproxy_substitution_in_the_starting_url_skips_the_stanza(tmp_path: Path) -> None:
    """OCLC's Books24x7 stanza: `^B` is a token EZproxy made for each user from TokenKey and
    TokenSignatureKey; nothing here can, so the stanza is skipped and its token lines reported."""
    text = (
        "Title Books24x7\nURL http://library.books24x7.example/library.asp?^B\n"
        "Books24x7Site ABC123\nTokenKey SomethingYouPick\nTokenSignatureKey FromVendor\n"
        "DJ books24x7.example\n"
    )
    (s,) = convert(text).stanzas
    assert s.status == "skipped" and s.vendor is None
    assert "EZproxy substitution ^B" in s.skip_reason
    assert [m.where for m in s.warnings] == ["config.txt:4", "config.txt:5"]
    status, stdout = import_text(tmp_path, text)
    assert status == 1  # nothing could be converted
    assert "    config.txt:5: TokenSignatureKey not converted" in stdout
    assert "FromVendor" not in stdout and "SomethingYouPick" not in stdout


def test_an_unknown_directive_in_a_stanza_is_noted_with_its_line() -> None:
    """MimeFilter changed which responses EZproxy rewrote; it is not dropped silently."""
    (s,) = convert(
        "Title A\nURL https://www.a.example/\nMimeFilter application/json .* javascript\n"
    ).stanzas
    assert [str(m) for m in s.notes] == [
        "config.txt:3: MimeFilter not converted; review what it did for this database"
    ]


def test_output_check_config_would_refuse_is_reported_and_exits_1(tmp_path: Path) -> None:
    """A Referer code without a Name directive is not a URL: check-config refuses it."""
    status, stdout = import_text(
        tmp_path, "Referer abc123\nTitle Demo\nURL https://www.demo.example/\nReferer\n"
    )
    assert status == 1
    assert "problem: " in stdout and "referer: must be an http(s) URL" in stdout
    assert check_config(tmp_path) != ""


def test_import_does_not_copy_a_form_password_it_cannot_name(tmp_path: Path) -> None:
    """docs/migrating-from-ezproxy.md: "FormVariable / -Form: a shared-login draft; the secret
    values are **not** copied". A stanza logging in with `FormVariable pw=…` (a common field
    name) gets the library-wide password written in clear into the vendor file's
    `[shared_login.extra_fields]`, which IT staff then move into /etc/weston-proxy/vendors."""
    password = "Weston-Vendor-Pa55"
    text = (
        "Title Music Library\n"
        "URL -Form=post https://www.music.example/login\n"
        "FormVariable user=westonlib\n"
        f"FormVariable pw={password}\n"
        "Host www.music.example\n"
    )
    _status, summary = import_text(tmp_path, text)
    written = "".join(p.read_text() for p in (tmp_path / "vendors").glob("*.toml"))
    assert written, summary
    assert password not in written, written
    assert password not in summary


def test_import_warns_when_neverproxy_covers_a_vendors_own_start_url(tmp_path: Path) -> None:
    """docs/migrating-from-ezproxy.md says to read the warnings first, and that a NeverProxy
    covering a stanza's starting point is reported so IT can decide whether to keep it. A
    `NeverProxy` naming the stanza's own URL host is written into never_proxy silently: the
    summary says "converted" with no warning, check-config accepts it, and the database's menu
    link then sends patrons straight to the vendor, outside the proxy (an IP-authenticated
    vendor refuses them)."""
    text = (
        "Title Legacy Archive\n"
        "URL https://www.legacy.example/start\n"
        "Host www.legacy.example\n"
        "NeverProxy www.legacy.example\n"
    )
    _status, summary = import_text(tmp_path, text)
    (written,) = (tmp_path / "vendors").glob("*.toml")
    vendor = tomllib.loads(written.read_text())
    assert "www.legacy.example" in vendor.get("never_proxy", [])  # as EZproxy: never proxied
    assert "converted with warnings: 1" in summary, summary
    assert "www.legacy.example" in summary.split("Warnings:", 1)[-1], summary


@pytest.mark.parametrize("name", ["pw", "passwd", "userpw", "pincode", "secret", "credential"])
def test_import_recognises_common_password_field_names(name: str) -> None:
    """A FormVariable named like a password becomes password_field; its value is not copied."""
    text = (
        "Title Music Library\nURL -Form=post https://www.music.example/login\n"
        f"FormVariable user=westonlib\nFormVariable {name}=Vendor-Pa55\nHost www.music.example\n"
    )
    (s,) = convert(text).stanzas
    assert s.vendor is not None
    assert s.vendor["shared_login"]["password_field"] == name
    assert "Vendor-Pa55" not in repr(s.vendor)


def test_import_copies_no_form_value_when_it_cannot_tell_the_password_field(
    tmp_path: Path,
) -> None:
    """With a password field under a name nothing recognises (`k`), any field left may be the
    secret: no FormVariable value is written, each is warned about with its line, and the value
    appears nowhere in the vendor file or the summary."""
    text = (
        "Title Music Library\n"
        "URL -Form=post https://www.music.example/login\n"
        "FormVariable user=westonlib\n"
        "FormVariable k=Weston-Vendor-Pa55\n"
        "FormVariable lang=en\n"
        "Host www.music.example\n"
    )
    _status, summary = import_text(tmp_path, text)
    (written,) = (tmp_path / "vendors").glob("*.toml")
    assert "Weston-Vendor-Pa55" not in written.read_text() + summary
    assert "extra_fields" not in tomllib.loads(written.read_text())["shared_login"]
    (s,) = convert(text).stanzas
    withheld = [m.where for m in s.warnings if "was not copied" in m.text]
    assert withheld == ["config.txt:4", "config.txt:5"], s.warnings
