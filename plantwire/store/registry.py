"""The store backends by name: one plain table, ``store.backend`` -> the backend's code.

A backend gives both sides of a store: the :class:`~plantwire.store.base.Store` that analytics
read and write through, and the :class:`~plantwire.store.base.LineWriter` the gateway writes
line protocol with. Its site-file block is a model in :mod:`plantwire.config.stores`. Each entry
is an import path, imported on first use (an edge never loads a store). Adding a backend:
docs/extending.md.
"""

from __future__ import annotations

from typing import Any, Protocol

from plantwire.registry import load_entry
from plantwire.store.base import LineWriter, Store

__all__ = ["STORE_BACKENDS", "StoreBackend", "backend_for", "register_backend"]


class StoreBackend(Protocol):
    """What a backend module offers, for its own block type."""

    def open_store(self, config: Any) -> Store:
        """The store for reading and writing points (close it, or use it as a context)."""
        ...

    def line_writer(self, config: Any, *, max_connections: int) -> LineWriter:
        """The gateway's writer (made in the event loop that will use it)."""
        ...


STORE_BACKENDS: dict[str, str | StoreBackend] = {
    "influxdb": "plantwire.store.influx_backend:BACKEND",
    "sqlite": "plantwire.store.sqlite_backend:BACKEND",
}


def backend_for(name: str) -> StoreBackend:
    """A backend's code (imported on first use)."""
    return load_entry(STORE_BACKENDS, name)


def register_backend(name: str, backend: StoreBackend) -> None:
    """Add a backend at run time (a plugin, a test); its block goes to
    :func:`plantwire.config.stores.register_store_model`."""
    STORE_BACKENDS[name] = backend
