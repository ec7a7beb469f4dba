"""The store a site file names: InfluxDB (an ``influxdb`` block) or the embedded SQLite file (a
``sqlite`` block). The gateway writes through :func:`make_line_writer`, analytics reads and
writes through :func:`open_store`; both take the same site file."""

from __future__ import annotations

from typing import TYPE_CHECKING

from plantwire.config.models import SiteConfig
from plantwire.store.base import StoreError

if TYPE_CHECKING:
    from plantwire.store.influx import InfluxStore
    from plantwire.store.influx_async import AsyncLineWriter
    from plantwire.store.sqlite import SqliteStore
    from plantwire.store.sqlite_write import SqliteLineWriter

__all__ = ["make_line_writer", "open_store", "store_name"]


def store_name(site: SiteConfig) -> str:
    """What the site's store is, for log lines and errors."""
    if site.influxdb is not None:
        return f"InfluxDB {site.influxdb.url}"
    if site.sqlite is not None:
        return f"SQLite {site.sqlite.path}"
    return "no store"


def _no_store() -> StoreError:
    return StoreError("the site file has no influxdb or sqlite block: nowhere to store data")


def open_store(site: SiteConfig) -> InfluxStore | SqliteStore:
    """The site's store for reading and writing points (close it, or use it as a context)."""
    if site.influxdb is not None:
        from plantwire.store.influx import InfluxStore

        return InfluxStore(site.influxdb)
    if site.sqlite is not None:
        from plantwire.store.sqlite import SqliteStore

        return SqliteStore(site.sqlite.path)
    raise _no_store()


def make_line_writer(
    site: SiteConfig, *, max_connections: int = 16
) -> AsyncLineWriter | SqliteLineWriter:
    """The gateway's line-protocol writer for the site's store."""
    if site.influxdb is not None:
        from plantwire.store.influx_async import make_async_writer

        return make_async_writer(site.influxdb, max_connections=max_connections)
    if site.sqlite is not None:
        from plantwire.store.sqlite_write import make_sqlite_writer

        return make_sqlite_writer(site.sqlite.path)
    raise _no_store()
