"""Background tasks that stop when told to, on Python 3.11 too."""

from __future__ import annotations

import asyncio
from typing import Any

# How long one cancel is given before the next.
RETRY_S = 0.1


async def stop(task: asyncio.Task[Any]) -> None:
    """Cancel `task` and wait until it has ended, cancelling again while it carries on.

    One cancel is not always enough on Python 3.11: `asyncio.wait_for` returns its inner result
    instead of raising when that result arrives in the same loop pass as the cancel (CPython
    gh-86296, fixed in 3.12). A periodic task caught there at shutdown goes round its loop again,
    and a shutdown that awaits it waits for ever: a `serve --workers 2` worker that never exited
    was traced to this. The proxy's own code uses `asyncio.timeout` instead, which keeps a cancel
    (tests/test_tasks.py holds it to that); this guards against the libraries a task calls. An
    exception the task ended with, other than its cancellation, is raised.

    A task whose own clean-up (a `finally` that awaits) takes longer than RETRY_S is cancelled
    again inside it: such clean-up must tolerate that, as the stats recorder's flush does (it puts
    its counts back for the final flush).
    """
    while not task.done():
        task.cancel()
        await asyncio.wait((task,), timeout=RETRY_S)
    if not task.cancelled():
        task.result()
