"""Running a PlantWire service until it is told to stop, and stopping its tasks for certain."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Coroutine, Iterable
from typing import Any

__all__ = ["cancel_and_wait", "run_until_signalled"]

RECANCEL_AFTER_S = 1.0


async def run_until_signalled(service: Coroutine[Any, Any, None]) -> None:
    """Run a service coroutine; SIGTERM and SIGINT cancel it, which is its cue to stop cleanly
    (flush, say goodbye, close). Its own errors propagate."""
    task = asyncio.create_task(service)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def cancel_and_wait(
    tasks: Iterable[asyncio.Task[Any]], *, again_after_s: float = RECANCEL_AFTER_S
) -> None:
    """Cancel tasks and wait until every one has ended, cancelling again while one runs on.

    A single cancel can be lost: in Python 3.11, ``asyncio.wait_for`` returns the awaited result
    when it completes in the same loop iteration as the cancellation, and the task carries on as
    if never cancelled (pymodbus awaits every response that way). Cancelling once and waiting
    would then wait forever -- a shutdown that hangs. The tasks' own errors are collected (not
    raised): the caller is stopping them.
    """
    tasks = list(tasks)
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=again_after_s)
    for task in tasks:
        if not task.cancelled():
            task.exception()  # retrieved, so asyncio does not log it as never retrieved
