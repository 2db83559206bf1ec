"""`weston-proxy compliance`: check vendors against the library's privacy terms and print a report.

Exit status: 0 when every critical check passes (PASSED), 1 when any critical check fails
(FAILED), 3 when none fails but one is unknown because a term the library requires is not recorded
in a vendor's contract entry (INCOMPLETE: record it, then run again), 2 on a usage or configuration
error (bad config, unknown vendor, unreadable page file, unwritable --out).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
from pathlib import Path
from typing import Any

from proxy.compliance import (
    FAILED,
    INCOMPLETE,
    INFO,
    UNKNOWN,
    Check,
    PageUnreadable,
    check_all,
    check_page,
    load_trackers,
    read_page,
)
from proxy.compliance_report import FORMATS, render

# Beside proxy.cli's 0, 1 and 2: a run with critical terms unrecorded is neither passed nor failed,
# and a cron job alerting on any non-zero status must hear of it.
EXIT_INCOMPLETE = 3

EPILOG = """\
exit status: 0 every critical check passed; 1 a critical check failed; 3 no critical check
failed, but one is unknown because a required term is not recorded in a vendor's [contract]
(record it from the signed agreement), or a shared account's history settings were not
confirmed off recently enough (confirm them in the vendor's admin), then run again; 2 usage or
configuration error.
"""


def register(sub: Any) -> None:
    s = sub.add_parser(
        "compliance",
        help="check every vendor's contract, configuration and transmissions",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument("--config", required=True)
    s.add_argument(
        "--vendor", action="append", default=[], metavar="ID", help="only this vendor (repeatable)"
    )
    s.add_argument(
        "--live",
        action="store_true",
        help="also run the proxy in-process against a loopback stand-in for each vendor",
    )
    s.add_argument("--format", choices=FORMATS, default="text")
    s.add_argument("--out", metavar="FILE", help="write the report here instead of stdout")
    s.add_argument(
        "--page",
        action="append",
        default=[],
        metavar="ID=FILE",
        help="a saved vendor start page (HTML, or an HTTP response saved with curl -i; a "
        "gzip, deflate or br body is decoded)",
    )
    s.set_defaults(func=cmd_compliance)


def _pages(specs: list[str], known: set[str], err: Any) -> dict[str, Path] | None:
    pages: dict[str, Path] = {}
    for spec in specs:
        vendor_id, sep, file = spec.partition("=")
        if not sep or not vendor_id or not file:
            print(f"--page must be ID=FILE, not {spec!r}", file=err)
            return None
        if vendor_id not in known:
            print(f"--page: no vendor {vendor_id!r} in this run", file=err)
            return None
        if not Path(file).is_file():
            print(f"--page: {file} is not a readable file", file=err)
            return None
        pages[vendor_id] = Path(file)
    return pages


def cmd_compliance(args: argparse.Namespace) -> int:
    from proxy.cli import EXIT_FAIL, EXIT_OK, EXIT_USAGE, load

    config = load(args.config, sys.stderr)
    if config is None:
        return EXIT_USAGE
    ids = {v.id for v in config.vendors}
    unknown = [vid for vid in args.vendor if vid not in ids]
    if unknown:
        print(f"no vendor {', '.join(map(repr, unknown))} in {args.config}", file=sys.stderr)
        return EXIT_USAGE
    vendors = [v for v in config.vendors if not args.vendor or v.id in args.vendor]
    pages = _pages(args.page, {v.id for v in vendors}, sys.stderr)
    if pages is None:
        return EXIT_USAGE
    report = check_all(config, vendors)
    by_id = {r.id: r for r in report.vendors}
    trackers = load_trackers()
    for v in vendors:
        if v.id in pages:
            try:
                page = read_page(pages[v.id])
            except PageUnreadable as exc:
                print(f"cannot read page {pages[v.id]}: {exc}", file=sys.stderr)
                return EXIT_USAGE
            by_id[v.id].checks += check_page(v, config, page, trackers)
        elif args.live:
            by_id[v.id].checks.append(
                Check(
                    "page.third_party",
                    INFO,
                    UNKNOWN,
                    "No start page given; pass --page ID=FILE with a saved copy to check it.",
                )
            )
    if args.live:
        for vid, checks in _run_live(config, [v.id for v in vendors]).items():
            by_id[vid].checks += checks
    text = render(report, args.format, library=config.library.name)
    if args.out:
        try:
            Path(args.out).write_text(text, encoding="utf-8")
        except OSError as exc:
            print(f"cannot write {args.out}: {exc.strerror}", file=sys.stderr)
            return EXIT_USAGE
    else:
        sys.stdout.write(text)
    return {FAILED: EXIT_FAIL, INCOMPLETE: EXIT_INCOMPLETE}.get(report.verdict, EXIT_OK)


def _run_live(config: Any, ids: list[str]) -> dict[str, list[Check]]:
    from proxy.compliance_live import LiveChecker
    from proxy.logs import configure_logging

    # The in-process proxy logs as it would in production; the run reads that log for canaries
    # (live.logs) instead of letting it reach the terminal or the report on stdout.
    logs = io.StringIO()
    configure_logging("debug", "json", stream=logs)

    def progress(text: str) -> None:
        sys.stderr.write(text)
        sys.stderr.flush()

    progress(f"live transmission checks for {len(ids)} vendor(s) (loopback only)\n")
    checker = LiveChecker(config, progress=progress, log_stream=logs)
    return asyncio.run(checker.run(ids))
