"""What the EZproxy import writes: each vendor file with its review comments, and the summary."""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING

import tomli_w

from proxy.ezproxy_stanza import StanzaResult

if TYPE_CHECKING:
    from proxy.ezproxy import ImportResult


def render(stanza: StanzaResult, *, today: dt.date) -> str:
    """The vendor file text: review comments (tomli_w writes no comments), then the TOML."""
    assert stanza.vendor is not None
    head = [
        f"# imported from EZproxy {stanza.source} lines {stanza.first_line}\N{EN DASH}{stanza.last_line} "
        f"on {today.isoformat()}; review [contract] before going live"
    ]
    head += [f"# warning: {m}" for m in stanza.warnings]
    head += [f"# note: {m}" for m in stanza.notes]
    head = [" ".join(h.split()) for h in head]  # one physical line per comment
    # TOML allows no control character but tab in a comment: one would make the file unloadable.
    head = [re.sub(r"[\x00-\x08\x0a-\x1f\x7f]", "\N{REPLACEMENT CHARACTER}", h) for h in head]
    return "\n".join(head) + "\n\n" + tomli_w.dumps(stanza.vendor)


def summary(result: ImportResult) -> str:
    ok = result.with_status("converted")
    warned = result.with_status("converted-with-warnings")
    skipped = result.with_status("skipped")
    out = [
        f"EZproxy import of {result.source}: {len(result.stanzas)} stanzas",
        f"  converted: {len(ok)}",
        f"  converted with warnings: {len(warned)}",
        f"  skipped: {len(skipped)}",
    ]
    if warned or result.warnings:
        out.append("Warnings:")
        out += [f"  {m}" for m in result.warnings]
        out += [f"  {m} [{s.vendor_id}]" for s in result.stanzas for m in s.warnings if s.vendor]
    if skipped:
        out.append("Skipped:")
        for s in skipped:
            out.append(f"  {s.source}:{s.first_line}-{s.last_line} {s.title!r}: {s.skip_reason}")
            out += [f"    {m}" for m in s.warnings]  # still true of the stanza, e.g. TokenKey
    notes = [f"  {m} [{s.vendor_id}]" for s in result.stanzas for m in s.notes if s.vendor]
    if notes:
        out += ["Notes:", *notes]
    return "\n".join(out) + "\n"
