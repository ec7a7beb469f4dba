"""Running a PlantWire service until it is told to stop."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Coroutine
from typing import Any

__all__ = ["run_until_signalled"]


async def run_until_signalled(service: Coroutine[Any, Any, None]) -> None:
    """Run a service coroutine; SIGTERM and SIGINT cancel it, which is its cue to stop cleanly
    (flush, say goodbye, close). Its own errors propagate."""
    task = asyncio.create_task(service)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task
