"""The `weston-proxy` command's entry point (also `python -m proxy`).

Nothing is imported before a `serve` blocks SIGHUP: a reload (`systemctl reload` may come right
after `start`) would otherwise end the process while it imports, and systemd counts death by
SIGHUP as a clean exit, so it is not restarted. proxy.reload unblocks the signal once its handler
is in place, and a reload sent meanwhile happens then.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["serve"]:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    from proxy.cli import main as cli_main

    return cli_main(argv)
