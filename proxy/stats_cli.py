"""The `stats` and `records` commands: published usage reports and the records inventory."""

from __future__ import annotations

import argparse
import datetime as dt
import sys

from proxy.errors import ConfigError


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def cmd_stats(args: argparse.Namespace) -> int:
    from proxy.cli import EXIT_USAGE, load
    from proxy.stats_report import run_stats

    config = load(args.config, sys.stderr)
    if config is None:
        return EXIT_USAGE
    if args.date_from and args.date_to and args.date_from > args.date_to:
        print("--from is after --to", file=sys.stderr)
        return EXIT_USAGE
    try:
        return run_stats(
            config,
            date_from=args.date_from,
            date_to=args.date_to,
            period=args.period,
            fmt=args.format,
            stdout=sys.stdout,
            stderr=sys.stderr,
        )
    except ConfigError as exc:
        for p in exc.problems:
            print(f"  {p}", file=sys.stderr)
        return EXIT_USAGE


def cmd_records(args: argparse.Namespace) -> int:
    from proxy.cli import EXIT_FAIL, EXIT_OK, EXIT_USAGE, load
    from proxy.records import inventory, render_json, render_text

    config = load(args.config, sys.stderr)
    if config is None:
        return EXIT_USAGE
    inv = inventory(config)
    sys.stdout.write(render_json(inv) if args.format == "json" else render_text(inv))
    incomplete = False  # the inventory is incomplete: say so, and not with exit 0
    if inv["sessions"]["unknown"]:
        print(f"sessions could not be counted: {inv['sessions']['source']}", file=sys.stderr)
        incomplete = True
    if inv["statistics"].get("error"):
        print(f"statistics file could not be read: {inv['statistics']['error']}", file=sys.stderr)
        incomplete = True
    return EXIT_FAIL if incomplete else EXIT_OK


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = sub.add_parser("stats", help="usage statistics per vendor and period, small cells hidden")
    s.add_argument("--config", required=True)
    s.add_argument("--from", dest="date_from", type=_date, default=None, metavar="DATE")
    s.add_argument("--to", dest="date_to", type=_date, default=None, metavar="DATE")
    s.add_argument("--period", choices=("day", "month"), default="month")
    s.add_argument("--format", choices=("text", "csv", "json", "counter"), default="text")
    s.set_defaults(func=cmd_stats)

    s = sub.add_parser("records", help="what the proxy holds now and where (counts and kinds)")
    s.add_argument("--config", required=True)
    s.add_argument("--format", choices=("text", "json"), default="text")
    s.set_defaults(func=cmd_records)
