"""A/B: the proxy from two source trees side by side, same origin, wrk runs interleaved.

    git worktree add /tmp/before HEAD~1
    python -m bench.ab /tmp/before . --paths /pass/page30k.dat,/page30k.html --seconds 5 --rounds 3

Both proxies use the memory store and the bench patron (file directory); each path is loaded on
A, then on B, round after round, and the median req/s and p99 are printed. Ratios B/A within one
run are what to read: the machine is shared.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from bench.bench import (
    Nginx,
    Proxy,
    free_port,
    login,
    origin_conf,
    page_tree,
    patron_headers,
    start_file_proxy,
    wait_port,
    wrk,
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("tree_a")
    ap.add_argument("tree_b")
    ap.add_argument("--paths", default="/pass/page30k.dat", help="comma-separated origin paths")
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--conns", type=int, default=32)
    args = ap.parse_args(argv)

    trees = [Path(t).resolve() for t in (args.tree_a, args.tree_b)]
    work, docroot, _, _ = page_tree("weston-ab-")
    origin_port = free_port()
    origin = Nginx(work / "origin", origin_conf(origin_port, docroot))
    origin.start()
    proxies: list[Proxy] = []
    try:
        wait_port(origin_port)
        targets = []
        for i, tree in enumerate(trees):
            port = free_port()
            proxies.append(
                start_file_proxy(work / f"p{i}", port=port, origin_port=origin_port, source=tree)
            )
            targets.append(("AB"[i], port, patron_headers(port, login(port))))
        runs: dict[tuple[str, str], list[tuple[float, float, int]]] = {}
        for _ in range(args.rounds):
            for path in args.paths.split(","):
                for label, port, headers in targets:
                    run = wrk(
                        path,
                        f"http://127.0.0.1:{port}{path}",
                        seconds=args.seconds,
                        conns=args.conns,
                        headers=headers,
                    )
                    runs.setdefault((path, label), []).append((run.rps, run.p99_ms, run.errors))
        for path in args.paths.split(","):
            medians = []
            for label in "AB":
                v = runs[(path, label)]
                rps = statistics.median(x[0] for x in v)
                medians.append(rps)
                print(
                    f"{path:<22} {label} {rps:8.0f} req/s  p99 "
                    f"{statistics.median(x[1] for x in v):8.1f} ms  errors {sum(x[2] for x in v)}"
                    f"  runs {[round(x[0]) for x in v]}"
                )
            print(f"{path:<22} B/A {medians[1] / medians[0]:.2f}")
    finally:
        for proxy in proxies:
            proxy.stop()
        origin.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
