"""The embedded store as a backend (``store: {backend: sqlite, path: ...}``): one SQLite file
for a demo or a small site without InfluxDB (:mod:`plantwire.store.sqlite`)."""

from __future__ import annotations

from plantwire.config.stores import SqliteConfig
from plantwire.store.base import LineWriter, Store

__all__ = ["BACKEND", "SqliteBackend"]


class SqliteBackend:
    def open_store(self, config: SqliteConfig) -> Store:
        from plantwire.store.sqlite import SqliteStore

        return SqliteStore(config.path)

    def line_writer(self, config: SqliteConfig, *, max_connections: int) -> LineWriter:
        from plantwire.store.sqlite_write import make_sqlite_writer

        return make_sqlite_writer(config.path)


BACKEND = SqliteBackend()
