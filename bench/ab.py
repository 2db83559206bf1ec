"""A/B: the proxy from two source trees side by side, same origin, wrk runs interleaved.

    git worktree add /tmp/before HEAD~1
    python -m bench.ab /tmp/before . --paths /pass/page30k.dat,/page30k.html --seconds 5 --rounds 3

Both proxies use the memory store and the bench patron (file directory); each path is loaded on
A, then on B, round after round, and the median req/s and p99 are printed. Ratios B/A within one
run are what to read: the machine is shared.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.bench import (
    FILE_DIRECTORY,
    VENDOR,
    Nginx,
    free_port,
    login,
    origin_conf,
    stop_process,
    vendor_page,
    wait_port,
    write_proxy_config,
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
    from proxy.hosts import map_label

    trees = [str(Path(t).resolve()) for t in (args.tree_a, args.tree_b)]
    work = Path(tempfile.mkdtemp(prefix="weston-ab-"))
    work.chmod(0o755)  # nginx workers run as nobody
    docroot = work / "www"
    (docroot / "pass").mkdir(parents=True)
    for name, size in (("page30k", 30 * 1024), ("page1m", 1024 * 1024)):
        data = vendor_page(size)
        (docroot / f"{name}.html").write_bytes(data)
        (docroot / "pass" / f"{name}.dat").write_bytes(data)
    origin_port = free_port()
    origin = Nginx(work / "origin", origin_conf(origin_port, docroot))
    origin.start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        wait_port(origin_port)
        targets = []
        for i, tree in enumerate(trees):
            port = free_port()
            cfg = write_proxy_config(
                work / f"p{i}",
                port=port,
                origin_port=origin_port,
                directory=FILE_DIRECTORY,
                store='store = "memory"',
            )
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "proxy", "serve", "--config", str(cfg)],
                    cwd=tree,
                    env=dict(os.environ, PYTHONPATH=tree),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            wait_port(port)
            time.sleep(0.5)
            headers = {
                "Host": f"{map_label(VENDOR)}.proxy.localhost:{port}",
                "Cookie": f"weston_session={login(port)}",
                "Accept-Encoding": "identity",
            }
            targets.append((tree, port, headers))
        runs: dict[tuple[str, str], list[tuple[float, float, int]]] = {}
        for _ in range(args.rounds):
            for path in args.paths.split(","):
                for tree, port, headers in targets:
                    run = wrk(
                        path,
                        f"http://127.0.0.1:{port}{path}",
                        seconds=args.seconds,
                        conns=args.conns,
                        headers=headers,
                    )
                    runs.setdefault((path, tree), []).append((run.rps, run.p99_ms, run.errors))
        for path in args.paths.split(","):
            medians = []
            for label, tree in zip("AB", trees, strict=True):
                v = runs[(path, tree)]
                rps = statistics.median(x[0] for x in v)
                medians.append(rps)
                print(
                    f"{path:<22} {label} {rps:8.0f} req/s  p99 "
                    f"{statistics.median(x[1] for x in v):8.1f} ms  errors {sum(x[2] for x in v)}"
                    f"  runs {[round(x[0]) for x in v]}"
                )
            print(f"{path:<22} B/A {medians[1] / medians[0]:.2f}")
    finally:
        for p in procs:
            stop_process(p, signal.SIGTERM, 10)
        origin.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
