"""Stopping tasks for certain, even when a cancellation is lost on the way."""

from __future__ import annotations

import asyncio
import sys

import pytest

from plantwire.lifecycle import cancel_and_wait


async def _reader(response: asyncio.Future[int], seen: list[str]) -> None:
    """A poll loop as a Modbus driver runs it: await a response under a timeout, then go on."""
    await asyncio.wait_for(response, 10)
    seen.append("response")
    while True:
        await asyncio.sleep(0.01)


def test_a_cancellation_lost_in_wait_for_is_repeated_until_the_task_ends() -> None:
    async def scenario() -> tuple[list[str], asyncio.Task[None]]:
        response: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        seen: list[str] = []
        task = asyncio.create_task(_reader(response, seen))
        await asyncio.sleep(0.01)
        # The response arrives in the same loop iteration as the cancel: Python 3.11's wait_for
        # returns it and drops the cancellation, so the loop would run on after a single cancel.
        response.set_result(1)
        await asyncio.wait_for(cancel_and_wait([task], again_after_s=0.05), 5)
        return seen, task

    seen, task = asyncio.run(scenario())
    assert task.cancelled()
    if sys.version_info < (3, 12):  # the race is real here: the first cancel was lost
        assert seen == ["response"]


def test_errors_of_stopped_tasks_are_collected_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    async def broken() -> None:
        raise RuntimeError("a bug in a pump")

    async def scenario() -> list[asyncio.Task[None]]:
        tasks = [asyncio.create_task(broken()), asyncio.create_task(asyncio.sleep(60))]
        await asyncio.sleep(0)
        await cancel_and_wait(tasks)
        return tasks

    failed, sleeping = asyncio.run(scenario())
    assert isinstance(failed.exception(), RuntimeError)
    assert sleeping.cancelled()
    assert "never retrieved" not in caplog.text


def test_nothing_to_stop_returns_at_once() -> None:
    asyncio.run(asyncio.wait_for(cancel_and_wait([]), 1))
