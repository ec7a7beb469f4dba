"""The gateway's Prometheus metrics (docs/gateway.md, "Health"): read from the gateway's own
state when scraped, so nothing is counted twice."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from plantwire.metrics import CounterFunction, Gauge, Registry

if TYPE_CHECKING:
    from gateway.service import Gateway

__all__ = ["register_metrics"]


def register_metrics(gateway: Gateway, registry: Registry) -> None:
    writer = gateway.writer
    sequences = gateway.intake.sequences
    counters: dict[str, tuple[str, Callable[[], float]]] = {
        "plantwire_gateway_messages_total": ("MQTT messages received.", lambda: gateway.messages),
        "plantwire_gateway_samples_total": ("Valid samples received.", lambda: gateway.samples),
        "plantwire_gateway_samples_rejected_total": (
            "Invalid samples dead-lettered.",
            lambda: gateway.rejected_samples,
        ),
        "plantwire_gateway_points_written_total": (
            "Lines accepted by InfluxDB.",
            lambda: writer.stats.lines_written,
        ),
        "plantwire_gateway_writes_total": (
            "Writes accepted by InfluxDB.",
            lambda: writer.stats.writes,
        ),
        "plantwire_gateway_write_retries_total": (
            "Writes retried (429, 5xx, timeouts).",
            lambda: writer.stats.retries,
        ),
        "plantwire_gateway_lines_spooled_total": (
            "Lines put in the disk spool.",
            lambda: writer.stats.spooled_lines,
        ),
        "plantwire_gateway_sequence_gaps_total": (
            "Batches missing in edge sequence numbers.",
            lambda: sequences.gaps,
        ),
        "plantwire_gateway_sequence_duplicates_total": (
            "Batches received again.",
            lambda: sequences.duplicates,
        ),
        "plantwire_gateway_messages_unrouted_total": (
            "Messages on a topic no payload format reads (dead-lettered).",
            lambda: gateway.routes.unrouted,
        ),
        "plantwire_gateway_batches_with_unknown_keys_total": (
            "Batches read with top-level keys this gateway does not know (a newer edge's).",
            lambda: gateway.intake.unknown_keys,
        ),
        "plantwire_gateway_service_messages_refused_total": (
            "Service state or stats messages refused.",
            lambda: gateway.pipeline.refused,
        ),
        "plantwire_gateway_messages_acked_total": (
            "Messages acknowledged to the broker.",
            lambda: gateway.tracker.acked,
        ),
        "plantwire_gateway_window_full_total": (
            "Times the window filled and reading paused (back-pressure).",
            lambda: gateway.window.pauses,
        ),
        "plantwire_gateway_connections_lost_total": (
            "MQTT connections lost.",
            lambda: gateway.connections_lost,
        ),
    }
    for name, (text, function) in counters.items():
        CounterFunction(registry, name, text).set_function(function)
    dead = CounterFunction(
        registry, "plantwire_gateway_dead_letters_total", "Dead letters by kind.", ["kind"]
    )
    for kind in ("topic", "payload", "samples", "influx", "route"):
        dead.set_function(lambda k=kind: gateway.dead_letters.get(k, 0), kind=kind)  # type: ignore[misc]
    _ingest_metrics(gateway, registry)
    gauges: dict[str, tuple[str, Callable[[], float]]] = {
        "plantwire_gateway_spool_lines": (
            "Lines waiting in the disk spool.",
            lambda: gateway.spool.lines,
        ),
        "plantwire_gateway_spool_bytes": ("Bytes in the disk spool.", lambda: gateway.spool.bytes),
        "plantwire_gateway_spool_disk_bytes": (
            "What SQLite uses for the spool (pages with data, and the WAL): the cap counts it.",
            lambda: gateway.spool.disk_bytes,
        ),
        "plantwire_gateway_spool_full": (
            "1 while the spool is at its cap or its disk is full: intake waits.",
            lambda: float(gateway.spool.full),
        ),
        "plantwire_gateway_lines_held": (
            "Lines held in memory: InfluxDB down and the spool's disk full.",
            lambda: writer.stats.held_lines,
        ),
        "plantwire_gateway_writes_in_flight": ("Writes under way.", lambda: writer.in_flight),
        "plantwire_gateway_messages_unacked": (
            "Messages received, not yet acknowledged.",
            lambda: gateway.tracker.unacked,
        ),
        "plantwire_gateway_influx_up": (
            "1 while InfluxDB takes writes.",
            lambda: float(writer.influx_up),
        ),
        "plantwire_gateway_mqtt_connected": (
            "1 while subscribed.",
            lambda: float(gateway.connected),
        ),
        "plantwire_gateway_unacked_bytes": (
            "Payload bytes received, not yet acknowledged (bounded by inflight_max_mb).",
            lambda: float(gateway.window.bytes),
        ),
        "plantwire_gateway_reading_paused": (
            "1 while the window is full and the broker's socket is not read.",
            lambda: float(gateway.window.full),
        ),
        "plantwire_gateway_write_stalled_seconds": (
            "Seconds writes have waited without one completing.",
            gateway.writer.stalled_s,
        ),
    }
    for name, (text, function) in gauges.items():
        Gauge(registry, name, text).set_function(function)


def _ingest_metrics(gateway: Gateway, registry: Registry) -> None:
    """Per ingest rule: messages, samples, refused messages and refused values."""
    counters = {
        "plantwire_gateway_ingest_messages_total": ("Messages of an ingest rule.", "messages"),
        "plantwire_gateway_ingest_samples_total": ("Samples an ingest rule took in.", "samples"),
        "plantwire_gateway_ingest_refused_total": (
            "Messages of an ingest rule dead-lettered whole.",
            "refused_messages",
        ),
        "plantwire_gateway_ingest_values_refused_total": (
            "Values inside a rule's messages dead-lettered.",
            "refused_parts",
        ),
    }
    for name, (text, attribute) in counters.items():
        counter = CounterFunction(registry, name, text, ["rule"])
        for decoder in gateway.routes.ingest_decoders():
            counter.set_function(
                lambda d=decoder, a=attribute: float(getattr(d, a)),  # type: ignore[misc]
                rule=decoder.name,
            )
