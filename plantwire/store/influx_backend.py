"""InfluxDB as a store backend (``store: {backend: influxdb, ...}``): reads with InfluxQL
(:class:`~plantwire.store.influx.InfluxStore`), the gateway's writes through ``/write`` for 1.x
or influxdb-client for 2.x/3.x (:func:`~plantwire.store.influx_async.make_async_writer`)."""

from __future__ import annotations

from plantwire.config.stores import InfluxConfig
from plantwire.store.base import LineWriter, Store

__all__ = ["BACKEND", "InfluxBackend"]


class InfluxBackend:
    def open_store(self, config: InfluxConfig) -> Store:
        from plantwire.store.influx import InfluxStore

        return InfluxStore(config)

    def line_writer(self, config: InfluxConfig, *, max_connections: int) -> LineWriter:
        from plantwire.store.influx_async import make_async_writer

        return make_async_writer(config, max_connections=max_connections)


BACKEND = InfluxBackend()
