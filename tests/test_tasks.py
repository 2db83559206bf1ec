"""`proxy.tasks.stop`: a background task ends even when a cancel is swallowed."""

from __future__ import annotations

import ast
import asyncio
import sys
from pathlib import Path

import pytest

from proxy import tasks

PROXY = Path(__file__).resolve().parent.parent / "proxy"


def _periodic(answers: list[asyncio.Future[int]], rounds: list[int]) -> asyncio.Task[None]:
    """A task like the metrics refresher: waits (with a timeout) for an answer, then sleeps."""

    async def run() -> None:
        while True:
            rounds.append(await asyncio.wait_for(answers[-1], 10))
            await asyncio.sleep(3600)

    return asyncio.create_task(run())


async def _swallowed_cancel() -> tuple[asyncio.Task[None], list[int]]:
    """A task cancelled in the same loop pass as its awaited answer arrives."""
    loop = asyncio.get_running_loop()
    answers: list[asyncio.Future[int]] = [loop.create_future()]
    rounds: list[int] = []
    task = _periodic(answers, rounds)
    await asyncio.sleep(0.01)  # now waiting in wait_for
    answers[-1].set_result(1)
    return task, rounds


async def test_one_cancel_can_be_swallowed_here() -> None:
    """What `stop` is for: on Python 3.11 the task goes on after one cancel (gh-86296)."""
    task, rounds = await _swallowed_cancel()
    task.cancel()
    await asyncio.sleep(0.3)
    if sys.version_info < (3, 12):
        assert not task.done() and rounds == [1]  # wait_for returned 1; now asleep for an hour
    await tasks.stop(task)
    assert task.cancelled()


async def test_stop_ends_a_task_whose_first_cancel_is_swallowed() -> None:
    task, rounds = await _swallowed_cancel()
    await asyncio.wait_for(tasks.stop(task), 5)
    assert task.cancelled()
    if sys.version_info < (3, 12):
        assert rounds == [1]  # the first cancel was swallowed; the second ended the sleep


async def test_stop_ends_an_ordinary_task_at_once() -> None:
    task = asyncio.create_task(asyncio.sleep(3600))
    await asyncio.sleep(0)
    started = asyncio.get_running_loop().time()
    await tasks.stop(task)
    assert task.cancelled()
    assert asyncio.get_running_loop().time() - started < tasks.RETRY_S


async def test_stop_raises_what_the_task_failed_with_and_accepts_a_finished_one() -> None:
    async def fail() -> None:
        raise LookupError("broken")

    failed = asyncio.create_task(fail())
    finished = asyncio.create_task(asyncio.sleep(0))
    await asyncio.sleep(0.01)
    with pytest.raises(LookupError):
        await tasks.stop(failed)
    await tasks.stop(finished)
    assert not finished.cancelled()


async def test_asyncio_timeout_keeps_the_cancel_that_wait_for_swallows() -> None:
    """The same race with `asyncio.timeout`, which the proxy's code uses: one cancel ends it."""
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[int] = loop.create_future()
    rounds: list[int] = []

    async def run() -> None:
        while True:
            async with asyncio.timeout(10):
                rounds.append(await answer)
            await asyncio.sleep(3600)

    task = asyncio.create_task(run())
    await asyncio.sleep(0.01)
    answer.set_result(1)
    task.cancel()
    await asyncio.wait((task,), timeout=1)
    assert task.cancelled() and rounds == []


def test_the_proxy_code_does_not_call_wait_for() -> None:
    """`asyncio.wait_for` can swallow a cancel on Python 3.11 (above): `asyncio.timeout` instead."""
    calls = [
        f"{path.relative_to(PROXY.parent)}:{node.lineno}"
        for path in sorted(PROXY.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "wait_for"
    ]
    assert calls == []
