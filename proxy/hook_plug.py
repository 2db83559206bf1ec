"""Plug a feature's hooks into `Services.hooks` for the life of a block, and always take them out.

A feature's `feature(app, svc)` generator adds its callables to hook lists at startup and must
remove exactly those at cleanup, even when startup of a later feature fails; `plugged` does both
in one place so a hook cannot be added without its removal.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def plugged(*hooks: tuple[list[Any], Any]) -> Iterator[None]:
    """Append each (hook list, callable) pair on entry; remove each again on exit."""
    for where, hook in hooks:
        where.append(hook)
    try:
        yield
    finally:
        for where, hook in hooks:
            where.remove(hook)
