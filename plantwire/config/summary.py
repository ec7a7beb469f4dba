"""A readable summary of a validated site, for ``plantwire config check``. Secrets are never
shown: only whether they are set and where they come from."""

from __future__ import annotations

from collections import Counter

from pydantic import SecretStr

from plantwire.config.loader import LoadedSite
from plantwire.config.models import SiteConfig
from plantwire.config.stores import InfluxConfig

__all__ = ["describe_site"]


def _secret(value: SecretStr | None, origin: str | None) -> str:
    if value is None or not value.get_secret_value():
        return "not set"
    return f"******** (from {origin})" if origin else "********"


def describe_site(loaded: LoadedSite) -> str:
    """The whole summary: site, MQTT, InfluxDB, shifts, edge nodes and assets."""
    site = loaded.config
    sections = [
        [f"{loaded.file}: OK", *_site_lines(site)],
        _mqtt_lines(site, loaded.secret_origins),
        _store_lines(site, loaded.secret_origins),
        _shift_lines(site),
        _edge_lines(site),
        *([_ingest_lines(site)] if site.ingest else []),
        _asset_lines(site, loaded.secret_origins),
    ]
    return "\n\n".join("\n".join(section) for section in sections)


def _site_lines(site: SiteConfig) -> list[str]:
    machines = site.machines()
    protocols: Counter[str] = Counter()
    for _, _, machine in machines:
        for source in machine.sources:
            protocols[source.protocol] += len(source.tags)
    lines_count = sum(len(area.lines) for area in site.areas)
    name = f" ({site.site.name})" if site.site.name else ""
    by_protocol = ", ".join(f"{proto} {count}" for proto, count in sorted(protocols.items()))
    return [
        f"site {site.site.id}{name}, time zone {site.site.timezone}",
        (
            f"  {len(site.areas)} areas, {lines_count} lines, {len(machines)} machines, "
            f"{sum(protocols.values())} tags ({by_protocol})"
        ),
    ]


def _mqtt_lines(site: SiteConfig, origins: dict[str, str]) -> list[str]:
    mqtt = site.mqtt
    out = [
        "MQTT",
        f"  url       {mqtt.url}" + ("  (TLS)" if mqtt.use_tls else ""),
        f"  username  {mqtt.username or '-'}",
        f"  password  {_secret(mqtt.password, origins.get('mqtt.password'))}",
    ]
    if mqtt.tls is not None:
        tls = mqtt.tls
        out.append(f"  tls       ca {tls.ca_file or 'system'}, client cert {tls.cert_file or '-'}")
    return out


def _store_lines(site: SiteConfig, origins: dict[str, str]) -> list[str]:
    store = site.store
    if store is None:
        return ["Store", "  none (the gateway and analytics need one)"]
    if not isinstance(store, InfluxConfig):
        return ["Store", f"  {store.describe()}"]
    if store.api == "v1":
        policy = f", retention policy {store.retention_policy}" if store.retention_policy else ""
        return [
            "Store",
            f"  InfluxDB  {store.url} (api v1)",
            f"  database  {store.database}{policy}",
            f"  password  {_secret(store.password, origins.get('store.password'))}",
        ]
    return [
        "Store",
        f"  InfluxDB  {store.url} (api v2)",
        f"  org       {store.org}, bucket {store.bucket}",
        f"  token     {_secret(store.token, origins.get('store.token'))}",
    ]


def _ingest_lines(site: SiteConfig) -> list[str]:
    out = ["Ingest rules (the plant's own MQTT data)"]
    for index, rule in enumerate(site.ingest):
        fixed = ", ".join(f"{k}={v}" for k, v in rule.asset.model_dump().items() if v is not None)
        name = rule.name or f"rule-{index}"
        out.append(
            f"  {name:<16} {rule.format:<7} {rule.topic}  (qos {rule.qos}"
            + (f", {fixed})" if fixed else ")")
        )
    return out


def _shift_lines(site: SiteConfig) -> list[str]:
    if not site.shifts:
        return ["Shifts", "  none (OEE runs against the whole day)"]
    out = ["Shifts"]
    for shift in site.shifts:
        breaks = sum(brk.minutes for brk in shift.breaks)
        out.append(
            f"  {shift.name:<12} {shift.start:%H:%M}-{shift.end:%H:%M} {','.join(shift.days)}; "
            f"{len(shift.breaks)} breaks, {breaks:g} min"
        )
    return out


def _edge_lines(site: SiteConfig) -> list[str]:
    per_node = Counter(
        site.edge_node_of(machine) for _, _, machine in site.machines() if machine.sources
    )
    out = ["Edge nodes"]
    for node in site.edge_nodes:
        buffer = node.buffer_path or f"plantwire-edge-{node.id}.db"
        out.append(
            f"  {node.id:<16} {per_node[node.id]} machines, "
            f"buffer {buffer} (max {node.buffer_max_mb:g} MB)"
        )
    return out


def _asset_lines(site: SiteConfig, origins: dict[str, str]) -> list[str]:
    out = ["Assets"]
    for a, area in enumerate(site.areas):
        for li, line in enumerate(area.lines):
            title = f"  {line.name}" if line.name else ""
            out.append(f"  {area.id}/{line.id}  ideal cycle {line.ideal_cycle_time_s:g} s{title}")
            for m, machine in enumerate(line.machines):
                out.append(f"    {machine.id} ({machine.kind})")
                for index, source in enumerate(machine.sources):
                    path = f"areas[{a}].lines[{li}].machines[{m}].sources[{index}].password"
                    extra = ""
                    login = source.login()
                    if login is not None:
                        password = _secret(login[1], origins.get(path))
                        extra = f", user {login[0]}, password {password}"
                    out.append(f"      {source.describe()}{extra}")
    return out
