"""A readable summary of a validated site, for ``plantwire config check``. Secrets are never
shown: only whether they are set and where they come from."""

from __future__ import annotations

from collections import Counter

from pydantic import SecretStr

from plantwire.config.loader import LoadedSite
from plantwire.config.models import ModbusSource, OpcuaSource, SiteConfig, Source

__all__ = ["describe_site"]


def _secret(value: SecretStr | None, origin: str | None) -> str:
    if value is None or not value.get_secret_value():
        return "not set"
    return f"******** (from {origin})" if origin else "********"


def _source_line(source: Source) -> str:
    if isinstance(source, ModbusSource):
        groups = ", ".join(f"{name} {interval:g}s" for name, interval in source.poll_groups.items())
        return (
            f"modbus {source.endpoint} device {source.device_id}: {len(source.tags)} tags "
            f"(poll {groups})"
        )
    assert isinstance(source, OpcuaSource)
    security = source.security.mode
    if security != "None":
        security += f"/{source.security.policy}"
    return f"opcua {source.endpoint} [{security}, {source.mode}]: {len(source.tags)} tags"


def describe_site(loaded: LoadedSite) -> str:
    site: SiteConfig = loaded.config
    origins = loaded.secret_origins
    machines = site.machines()
    protocols: Counter[str] = Counter()
    for _, _, machine in machines:
        for source in machine.sources:
            protocols[source.protocol] += len(source.tags)
    lines_count = sum(len(area.lines) for area in site.areas)
    out = [
        f"{loaded.file}: OK",
        f"site {site.site.id}" + (f" ({site.site.name})" if site.site.name else "") + f", time zone {site.site.timezone}",
        f"  {len(site.areas)} areas, {lines_count} lines, {len(machines)} machines, "
        f"{sum(protocols.values())} tags ("
        + ", ".join(f"{name} {count}" for name, count in sorted(protocols.items()))
        + ")",
        "",
        "MQTT",
        f"  url       {site.mqtt.url}" + ("  (TLS)" if site.mqtt.use_tls else ""),
        f"  username  {site.mqtt.username or '-'}",
        f"  password  {_secret(site.mqtt.password, origins.get('mqtt.password'))}",
    ]
    if site.mqtt.tls is not None:
        tls = site.mqtt.tls
        out.append(f"  tls       ca {tls.ca_file or 'system'}, client cert {tls.cert_file or '-'}")
    out += ["", "InfluxDB"]
    influx = site.influxdb
    if influx is None:
        out.append("  not configured (the embedded store is used)")
    elif influx.api == "v1":
        out += [
            f"  url       {influx.url} (api v1)",
            f"  database  {influx.database}" + (f", retention policy {influx.retention_policy}" if influx.retention_policy else ""),
            f"  password  {_secret(influx.password, origins.get('influxdb.password'))}",
        ]
    else:
        out += [
            f"  url       {influx.url} (api v2)",
            f"  org       {influx.org}, bucket {influx.bucket}",
            f"  token     {_secret(influx.token, origins.get('influxdb.token'))}",
        ]
    out += ["", "Shifts"]
    if not site.shifts:
        out.append("  none (OEE runs against the whole day)")
    for shift in site.shifts:
        breaks = sum(brk.minutes for brk in shift.breaks)
        out.append(
            f"  {shift.name:<12} {shift.start:%H:%M}-{shift.end:%H:%M} {','.join(shift.days)}; "
            f"{len(shift.breaks)} breaks, {breaks:g} min"
        )
    out += ["", "Edge nodes"]
    per_node = Counter(site.edge_node_of(machine) for _, _, machine in machines)
    for node in site.edge_nodes:
        buffer = node.buffer_path or f"plantwire-edge-{node.id}.db"
        out.append(f"  {node.id:<16} {per_node[node.id]} machines, buffer {buffer} (max {node.buffer_max_mb:g} MB)")
    out += ["", "Assets"]
    for area in site.areas:
        for line in area.lines:
            out.append(f"  {area.id}/{line.id}  ideal cycle {line.ideal_cycle_time_s:g} s" + (f"  {line.name}" if line.name else ""))
            for machine in line.machines:
                out.append(f"    {machine.id} ({machine.kind})")
                for index, source in enumerate(machine.sources):
                    origin = origins.get(_source_password_path(site, machine.id, index))
                    extra = ""
                    if isinstance(source, OpcuaSource) and source.username:
                        extra = f", user {source.username}, password {_secret(source.password, origin)}"
                    out.append(f"      {_source_line(source)}{extra}")
    return "\n".join(out)


def _source_password_path(site: SiteConfig, machine_id: str, source_index: int) -> str:
    for a, area in enumerate(site.areas):
        for li, line in enumerate(area.lines):
            for m, machine in enumerate(line.machines):
                if machine.id == machine_id:
                    return f"areas[{a}].lines[{li}].machines[{m}].sources[{source_index}].password"
    return ""
