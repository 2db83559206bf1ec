"""Profile the proxy under wrk load with py-spy: where one worker spends its time per request kind.

    python -m bench.profile pass      # 30 KB pass-through with the signed assertion
    python -m bench.profile pass1m    # the 1 MB page passed through
    python -m bench.profile rewrite   # 30 KB HTML page through the rewriter
    python -m bench.profile rewrite1m # the 1 MB HTML page through the rewriter

Prints the functions with the most samples (self and inclusive) and leaves the raw collapsed
stacks in bench/results/profile-<kind>.txt (feed them to flamegraph.pl or speedscope).
Needs `pip install py-spy` and permission to ptrace (root, or kernel.yama.ptrace_scope = 0).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import threading
from pathlib import Path

from bench.bench import (
    ROOT,
    Nginx,
    Proxy,
    free_port,
    login,
    origin_conf,
    page_tree,
    patron_headers,
    preflight,
    start_file_proxy,
    wait_port,
    wrk,
)

PATHS = {
    "pass": "/pass/page30k.dat",
    "pass1m": "/pass/page1m.dat",
    "rewrite": "/page30k.html",
    "rewrite1m": "/page1m.html",
}


def top(raw: Path, n: int = 25) -> str:
    """Self and inclusive sample counts per function from py-spy's collapsed stacks."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        total += count
        frames = [
            f.split(" (")[0] + " (" + f.split(" (")[-1].split(":")[0].rsplit("/", 1)[-1]
            for f in stack.split(";")
        ]
        own[frames[-1]] += count
        for f in set(frames):
            incl[f] += count
    lines = [f"{total} samples", "", "self %   function"]
    lines += [f"{100 * c / total:6.1f}   {f}" for f, c in own.most_common(n)]
    lines += ["", "incl %   function"]
    lines += [f"{100 * c / total:6.1f}   {f}" for f, c in incl.most_common(n)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("kind", choices=sorted(PATHS))
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    args = ap.parse_args(argv)

    work, docroot, page30, page1m = page_tree("weston-profile-")
    origin_port, proxy_port = free_port(), free_port()
    origin = Nginx(work / "origin", origin_conf(origin_port, docroot))
    origin.start()
    proxy: Proxy | None = None
    try:
        wait_port(origin_port)
        proxy = start_file_proxy(work / "p1", port=proxy_port, origin_port=origin_port)
        hdr = patron_headers(proxy_port, login(proxy_port))
        url = f"http://127.0.0.1:{proxy_port}{PATHS[args.kind]}"
        expect = {"pass": page30, "pass1m": page1m}.get(args.kind)
        preflight(args.kind, url, hdr, expect)
        out_dir = ROOT / "bench" / "results"
        out_dir.mkdir(exist_ok=True)
        raw = out_dir / f"profile-{args.kind}.txt"
        assert proxy.proc is not None
        spy = subprocess.Popen(
            [
                "py-spy",
                "record",
                "--format",
                "raw",
                "--rate",
                str(args.rate),
                "-o",
                str(raw),
                "-d",
                str(args.seconds),
                "-p",
                str(proxy.proc.pid),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        result: list[object] = []
        t = threading.Thread(
            target=lambda: result.append(
                wrk(args.kind, url, seconds=args.seconds, conns=args.conns, headers=hdr)
            )
        )
        t.start()
        t.join()
        spy.wait(60)
        print(result[0])
        print(top(raw))
    finally:
        if proxy is not None:
            proxy.stop()
        origin.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
