"""The rest of deploy/: compose.yaml is a valid Compose file whose parts fit together, and the
Grafana, InfluxDB, site-file, systemd and certificate pieces say what the rest of PlantWire
expects of them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pw_deploy import (
    COMPOSE_SCHEMA,
    DEPLOY,
    REPO,
    SITE_A,
    add_site,
    make_certs,
    tool,
)

from plantwire.cli import build_parser
from plantwire.config.loader import load_site_file

# -- compose.yaml ---------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    document = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(document, dict)
    return document


def interpolate(value: str, environ: Mapping[str, str] | None = None) -> str:
    """Compose's ${NAME} and ${NAME:-default}, with the defaults compose.yaml gives."""
    env = environ or {}

    def one(found: re.Match[str]) -> str:
        name, default = found.group(1), found.group(3)
        if name in env:
            return env[name]
        assert default is not None, f"${{{name}}} has no default in compose.yaml"
        return default

    return re.sub(r"\$\{(\w+)(:-([^}]*))?\}", one, value)


def secret_targets(service: Mapping[str, Any]) -> dict[str, str]:
    """target name (the file under /run/secrets) -> top-level secret, for one service."""
    targets: dict[str, str] = {}
    for entry in service.get("secrets", []):
        if isinstance(entry, str):
            targets[entry] = entry
        else:
            targets[entry.get("target", entry["source"])] = entry["source"]
    return targets


def mounts(service: Mapping[str, Any]) -> dict[str, str]:
    """container path -> source (a named volume, or a path relative to deploy/)."""
    found: dict[str, str] = {}
    for entry in service.get("volumes", []):
        source, target = interpolate(entry).split(":")[:2]
        found[target] = source
    return found


def test_compose_file_validates_against_the_compose_specification() -> None:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    jsonschema.Draft201909Validator.check_schema(schema)
    # Formats are not checked: the schema's "duration" would mean ISO 8601 ("PT30S") to
    # jsonschema, while Compose writes durations as "30s".
    validator = jsonschema.Draft201909Validator(schema)
    document = compose()

    errors = [f"{error.json_path}: {error.message}" for error in validator.iter_errors(document)]
    assert errors == []

    # The schema does hold a file to the specification: a misspelt key is an error.
    document["services"]["gateway"]["restrat"] = "always"
    assert not validator.is_valid(document)


def test_compose_services_refer_only_to_what_exists() -> None:
    document = compose()
    services: dict[str, Any] = document["services"]
    for name, service in services.items():
        assert set(service.get("depends_on", {})) <= set(services), name
        assert set(secret_targets(service).values()) <= set(document["secrets"]), name
        for target, source in mounts(service).items():
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name} mounts {source} at {target}"
            else:
                assert source in document["volumes"], f"{name} uses undeclared volume {source}"
        if "build" in service:
            context = DEPLOY / service["build"]["context"]
            assert (context / service["build"]["dockerfile"]).is_file()
    # Secrets are made at deploy time, in the one folder make-certs.sh and docs/deploy.md use.
    assert all(
        interpolate(secret["file"]).startswith("./secrets/")
        for secret in document["secrets"].values()
    )


def test_compose_hands_mosquitto_the_files_its_config_names() -> None:
    mosquitto = compose()["services"]["mosquitto"]
    config = (DEPLOY / "mosquitto" / "mosquitto.conf").read_text()

    named_secrets = set(re.findall(r"/run/secrets/([\w.-]+)", config))
    assert named_secrets == {"mosquitto-passwd", "ca.crt", "broker.crt", "broker.key"}
    assert named_secrets <= set(secret_targets(mosquitto))
    assert mounts(mosquitto)["/mosquitto/config/mosquitto.conf"] == "./mosquitto/mosquitto.conf"
    assert mounts(mosquitto)["/mosquitto/config/acl"] == "./mosquitto/acl"
    assert "acl_file /mosquitto/config/acl" in config.splitlines()


def grafana_provisioning(kind: str) -> dict[str, Any]:
    files = sorted((DEPLOY / "grafana" / "provisioning" / kind).glob("*.yaml"))
    assert len(files) == 1, files
    document = yaml.safe_load(files[0].read_text())
    assert isinstance(document, dict)
    return document


def test_grafana_provisions_the_influxql_data_source_and_the_boards() -> None:
    for path in (DEPLOY / "grafana" / "provisioning").rglob("*"):
        if path.is_file():
            assert yaml.safe_load(path.read_text()), f"{path} is empty or not YAML"
    [source] = grafana_provisioning("datasources")["datasources"]
    [provider] = grafana_provisioning("dashboards")["providers"]
    grafana = compose()["services"]["grafana"]

    assert source["uid"] == "plantwire-influxdb"  # what every board refers to
    assert source["type"] == "influxdb"
    assert source["jsonData"]["version"] == "InfluxQL"
    assert source["jsonData"]["dbName"] == source["database"] == "plantwire"
    password_file = re.fullmatch(
        r"\$__file\{/run/secrets/(.+)\}", source["secureJsonData"]["password"]
    )
    assert password_file and password_file.group(1) in secret_targets(grafana)

    assert provider["type"] == "file"
    assert mounts(grafana)[provider["options"]["path"]] == "./grafana/dashboards"
    assert mounts(grafana)["/etc/grafana/provisioning"] == "./grafana/provisioning"


# -- InfluxDB's first start -----------------------------------------------------------------------

FAKE_INFLUX = """#!/bin/sh
# Stands in for the influx CLI: records each call's arguments, one call per line.
for argument in "$@"; do printf '%s\\037' "$argument"; done >>"$INFLUX_CALLS"
echo >>"$INFLUX_CALLS"
"""


def run_influx_init(
    tmp_path: Path, passwords: Mapping[str, str]
) -> tuple[int, str, list[list[str]]]:
    """deploy/influxdb/plantwire-init.sh as the influxdb image runs it, against a recording
    stand-in for the influx CLI; returns its exit code, its stderr and the CLI calls."""
    bin_dir, secrets, calls = tmp_path / "bin", tmp_path / "secrets", tmp_path / "calls"
    bin_dir.mkdir()
    secrets.mkdir()
    (bin_dir / "influx").write_text(FAKE_INFLUX)
    (bin_dir / "influx").chmod(0o755)
    for name, password in passwords.items():
        (secrets / name).write_text(password + "\n")
    environ = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "INFLUX_CALLS": str(calls),
        "PLANTWIRE_SECRETS": str(secrets),
        # What the image's entrypoint exports after its own setup.
        "DOCKER_INFLUXDB_INIT_ORG": "plantwire",
        "DOCKER_INFLUXDB_INIT_BUCKET_ID": "0123456789abcdef",
    }
    done = subprocess.run(
        [tool("bash"), str(DEPLOY / "influxdb" / "plantwire-init.sh")],
        env=environ,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = calls.read_text().splitlines() if calls.exists() else []
    return done.returncode, done.stderr, [line.split("\x1f")[:-1] for line in lines]


def flags(call: list[str]) -> dict[str, list[str]]:
    """--flag value pairs of a CLI call (a flag without a value maps to [])."""
    found: dict[str, list[str]] = {}
    for index, word in enumerate(call):
        if word.startswith("--"):
            value = call[index + 1 : index + 2]
            found.setdefault(word, []).extend(v for v in value if not v.startswith("--"))
    return found


def test_influxdb_init_maps_the_database_and_makes_a_login_per_service(tmp_path: Path) -> None:
    passwords = {
        "influxdb-gateway-password": "gw-secret",
        "influxdb-analytics-password": "an-secret",
        "influxdb-grafana-password": "gr-secret",
    }
    code, stderr, calls = run_influx_init(tmp_path, passwords)
    assert code == 0, stderr

    [dbrp] = [flags(call) for call in calls if call[:3] == ["v1", "dbrp", "create"]]
    assert dbrp["--db"] == ["plantwire"]
    assert dbrp["--rp"] == ["autogen"]
    assert dbrp["--bucket-id"] == ["0123456789abcdef"]
    assert "--default" in dbrp

    logins = {
        flags(call)["--username"][0]: (
            flags(call)["--password"][0],
            {kind for kind in ("read", "write") if f"--{kind}-bucket" in flags(call)},
        )
        for call in calls
        if call[:3] == ["v1", "auth", "create"]
    }
    assert logins == {
        "plantwire-gateway": ("gw-secret", {"write"}),
        "plantwire-analytics": ("an-secret", {"read", "write"}),
        "grafana": ("gr-secret", {"read"}),
    }

    # The names the script makes are the ones the other services use.
    services = compose()["services"]
    [source] = grafana_provisioning("datasources")["datasources"]
    assert services["gateway"]["environment"]["PLANTWIRE_INFLUX_USER"] == "plantwire-gateway"
    assert services["analytics"]["environment"]["PLANTWIRE_INFLUX_USER"] == "plantwire-analytics"
    assert source["user"] == "grafana"
    assert source["jsonData"]["dbName"] == dbrp["--db"][0]
    secret_files = {f"influxdb-{name}-password" for name in ("gateway", "analytics", "grafana")}
    assert secret_files <= set(secret_targets(services["influxdb"]))
    assert mounts(services["influxdb"])["/docker-entrypoint-initdb.d"] == "./influxdb"


def test_influxdb_init_stops_when_a_password_is_missing(tmp_path: Path) -> None:
    code, stderr, _ = run_influx_init(tmp_path, {"influxdb-gateway-password": "gw-secret"})
    assert code != 0
    assert "influxdb-analytics-password is missing or empty" in stderr


# -- the site file, as each part reads it ---------------------------------------------------------


def secret_folder(tmp_path: Path, names: Iterable[str]) -> Path:
    """A stand-in for /run/secrets or a systemd credentials folder, holding the given files."""
    folder = tmp_path / "secrets"
    folder.mkdir()
    for name in names:
        (folder / name).write_text(f"{name} content\n")
    return folder


@pytest.mark.parametrize("service_name", ["gateway", "analytics"])
def test_each_container_reads_the_site_file_with_its_own_user_and_secrets(
    service_name: str, tmp_path: Path
) -> None:
    service = compose()["services"][service_name]
    targets = secret_targets(service)
    secrets = secret_folder(tmp_path, targets)
    environ = {
        name: interpolate(str(value)).replace("/run/secrets", str(secrets))
        for name, value in service["environment"].items()
    }
    environ["PLANTWIRE_SECRETS"] = str(secrets)  # the image sets /run/secrets (deploy/Dockerfile)
    site_file = DEPLOY / mounts(service)["/etc/plantwire/site.yaml"]

    site = load_site_file(site_file, environ).config

    assert site.site.id == SITE_A == interpolate("${PLANTWIRE_SITE:-binh-duong}")
    assert site.mqtt.url == "mqtts://mosquitto:8883"
    assert site.mqtt.username == f"{service_name}-{SITE_A}"  # its ACL user
    assert site.mqtt.password is not None
    assert site.mqtt.password.get_secret_value() == "mqtt-password content"
    assert site.mqtt.tls is not None
    assert {site.mqtt.tls.ca_file, site.mqtt.tls.cert_file, site.mqtt.tls.key_file} == {
        secrets / "ca.crt",
        secrets / "mqtt-client.crt",
        secrets / "mqtt-client.key",
    }
    assert site.store is not None
    assert site.store.password is not None
    assert site.store.password.get_secret_value() == "influxdb-password content"
    # The command line is one plantwire accepts, and the health check asks the right port.
    args = build_parser().parse_args(service["command"])
    assert args.command == service_name
    health_port = {"gateway": site.gateway.health_port, "analytics": site.analytics.health_port}
    assert f"127.0.0.1:{health_port[service_name]}/healthz" in " ".join(
        service["healthcheck"]["test"]
    )


def unit_settings() -> list[tuple[str, str, str]]:
    """(section, key, value) of every setting of the edge unit, repeated keys included."""
    settings: list[tuple[str, str, str]] = []
    section = ""
    for raw in (DEPLOY / "systemd" / "plantwire-edge@.service").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        settings.append((section, key, value))
    return settings


def test_the_edge_unit_runs_plantwire_edge_with_the_site_file_and_its_credentials(
    tmp_path: Path,
) -> None:
    settings = unit_settings()
    [exec_start] = [value for section, key, value in settings if key == "ExecStart"]
    credentials = [value.split(":")[0] for _, key, value in settings if key == "LoadCredential"]
    environment = dict(value.split("=", 1) for _, key, value in settings if key == "Environment")
    secrets = secret_folder(tmp_path, credentials)
    environ = {name: value.replace("%d", str(secrets)) for name, value in environment.items()}

    program, *arguments = exec_start.replace("%i", "edge-dairy").split()
    assert program.endswith("/plantwire")
    assert arguments[:1] == ["edge"]
    args = build_parser().parse_args(arguments)
    # The unit reads the same site file the compose stack does (installed at args.config).
    assert str(args.config) == "/etc/plantwire/site.yaml"
    site = load_site_file(DEPLOY / "site.compose.yaml", environ).config
    assert args.node in {node.id for node in site.edge_nodes}
    assert site.mqtt.username == f"edge-{SITE_A}"
    assert site.mqtt.password is not None
    assert site.mqtt.password.get_secret_value() == "mqtt-password content"
    # The buffers live in the unit's state folder, which outlives restarts.
    assert ("Service", "StateDirectory", "plantwire") in settings
    assert all(str(node.buffer_path).startswith("/var/lib/plantwire/") for node in site.edge_nodes)
    assert ("Install", "WantedBy", "multi-user.target") in settings


def test_systemd_accepts_the_edge_unit(tmp_path: Path) -> None:
    analyze = tool("systemd-analyze")
    # An instance of the template, its program pointed at this plantwire (systemd checks that
    # ExecStart's program exists).
    unit = (DEPLOY / "systemd" / "plantwire-edge@.service").read_text()
    plantwire = Path(sys.executable).with_name("plantwire")
    instance = tmp_path / "plantwire-edge@edge-dairy.service"
    instance.write_text(unit.replace("/opt/plantwire/bin/plantwire", str(plantwire)))

    done = subprocess.run(
        [analyze, "verify", str(instance)], capture_output=True, text=True, check=False
    )
    # verify exits 0 even for unknown keys; any word from it is a problem.
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


# -- certificates ---------------------------------------------------------------------------------


def test_make_certs_issues_a_ca_server_and_client_certificates_openssl_accepts(
    tmp_path: Path,
) -> None:
    tls = tmp_path / "tls"
    assert make_certs(tls, "ca").returncode == 0
    assert make_certs(tls, "server", "broker", "DNS:mosquitto", "IP:10.20.0.5").returncode == 0
    assert make_certs(tls, "client", "edge-binh-duong", "gateway-binh-duong").returncode == 0
    openssl = tool("openssl")

    def verify(purpose: str, name: str) -> str:
        done = subprocess.run(
            [
                openssl,
                "verify",
                "-x509_strict",
                "-purpose",
                purpose,
                "-CAfile",
                str(tls / "ca.crt"),
                str(tls / f"{name}.crt"),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        return done.stdout.strip() or done.stderr.strip()

    assert verify("sslserver", "broker") == f"{tls / 'broker.crt'}: OK"
    assert verify("sslclient", "edge-binh-duong") == f"{tls / 'edge-binh-duong.crt'}: OK"
    # A client certificate cannot pass for a broker.
    assert "OK" not in verify("sslserver", "gateway-binh-duong")
    names = subprocess.run(
        [openssl, "x509", "-in", str(tls / "broker.crt"), "-noout", "-ext", "subjectAltName"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "DNS:mosquitto" in names and "IP Address:10.20.0.5" in names
    assert (tls / "broker.key").stat().st_mode & 0o077 == 0  # the owner's only
    assert (tls / ".gitignore").read_text() == "*\n"  # never committed by mistake


def test_make_certs_never_replaces_a_ca_or_a_certificate(tmp_path: Path) -> None:
    tls = tmp_path / "tls"
    make_certs(tls, "ca")
    make_certs(tls, "client", "edge-binh-duong")
    ca, client = (tls / "ca.crt").read_bytes(), (tls / "edge-binh-duong.crt").read_bytes()

    again_ca = make_certs(tls, "ca")
    again_client = make_certs(tls, "client", "edge-binh-duong")

    assert again_ca.returncode != 0 and "lock out" in again_ca.stderr
    assert again_client.returncode != 0 and "exists already" in again_client.stderr
    assert (tls / "ca.crt").read_bytes() == ca
    assert (tls / "edge-binh-duong.crt").read_bytes() == client


# -- docs/deploy.md's recipe for a second site ----------------------------------------------------

DEPLOY_DOCS = REPO / "docs" / "deploy.md"


def test_the_docs_acl_command_adds_a_site_as_the_broker_test_does(tmp_path: Path) -> None:
    text = DEPLOY_DOCS.read_text()
    found = re.search(r"^ *(\{ echo; sed .*?>> mosquitto/acl)$", text, re.MULTILINE | re.DOTALL)
    assert found, "docs/deploy.md lost its command that copies a site's ACL block"
    (tmp_path / "mosquitto").mkdir()
    shipped = (DEPLOY / "mosquitto" / "acl").read_text()
    (tmp_path / "mosquitto" / "acl").write_text(shipped)

    subprocess.run([tool("bash"), "-c", found.group(1)], cwd=tmp_path, check=True)

    assert (tmp_path / "mosquitto" / "acl").read_text() == add_site(shipped, SITE_A, "long-an")


def test_the_docs_compose_file_for_a_second_site_fits_the_stack() -> None:
    found = re.search(
        r"```yaml\n(\s*# deploy/compose\.long-an\.yaml:.*?)```", DEPLOY_DOCS.read_text(), re.DOTALL
    )
    assert found, "docs/deploy.md lost its compose.long-an.yaml"
    extra = yaml.safe_load(textwrap.dedent(found.group(1)))
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    errors = [e.message for e in jsonschema.Draft201909Validator(schema).iter_errors(extra)]
    assert errors == []

    main = compose()
    services = main["services"] | extra["services"]
    for name, service in extra["services"].items():
        site_user = service["environment"]["PLANTWIRE_MQTT_USER"]
        assert site_user == f"{name.split('-', 1)[0]}-long-an"
        assert set(service["depends_on"]) <= set(services)
        assert set(secret_targets(service).values()) <= set(main["secrets"]) | set(extra["secrets"])
        # The same files in the container as the first site's service of the same role.
        first = main["services"][name.split("-", 1)[0]]
        assert set(secret_targets(service)) == set(secret_targets(first))
        assert set(service["environment"]) == set(first["environment"])
        assert build_parser().parse_args(service["command"]).command == name.split("-", 1)[0]
