"""Types of the compiled scans in `_scan.pyx` (see its docstring)."""

from collections.abc import Callable

def rewrite(
    data: bytes,
    replace: Callable[[bytes], bytes],
    idn: tuple[str, ...] | None = None,
) -> bytes: ...
def slash_hosts(data: bytes) -> set[bytes]: ...
def tag_spans(
    data: bytes, max_len: int, loads: bool = False
) -> tuple[list[tuple[int, int]], int, int]: ...
