"""The store a site file names (its ``store:`` block): the gateway writes through
:func:`make_line_writer`, analytics reads and writes through :func:`open_store`; both take the
same site file, and the backend comes from :mod:`plantwire.store.registry`."""

from __future__ import annotations

from plantwire.config.models import SiteConfig
from plantwire.config.stores import StoreConfig
from plantwire.store.base import LineWriter, Store, StoreError
from plantwire.store.registry import backend_for

__all__ = ["make_line_writer", "open_store", "site_store", "store_name"]


def site_store(site: SiteConfig) -> StoreConfig:
    """The site's store block; StoreError when it has none."""
    if site.store is None:
        raise StoreError("the site file has no store: block: nowhere to store data")
    return site.store


def store_name(site: SiteConfig) -> str:
    """What the site's store is, for log lines and errors."""
    return site.store.describe() if site.store is not None else "no store"


def open_store(site: SiteConfig) -> Store:
    """The site's store for reading and writing points (close it, or use it as a context)."""
    config = site_store(site)
    return backend_for(config.backend).open_store(config)


def make_line_writer(site: SiteConfig, *, max_connections: int = 16) -> LineWriter:
    """The gateway's line-protocol writer for the site's store."""
    config = site_store(site)
    return backend_for(config.backend).line_writer(config, max_connections=max_connections)
