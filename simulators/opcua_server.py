"""The plant served over OPC UA: site / area / line / machine objects with a variable per metric,
engineering units and ranges, source timestamps in plant time, and Bad status while a sensor drops
out. Security is optional: Basic256Sha256 Sign or SignAndEncrypt with a self-signed server
certificate (made on first start), trusted client certificates, and user/password identity.
"""

from __future__ import annotations

import hmac
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from asyncua import Node, Server, ua
from asyncua.common.utils import ServiceError
from asyncua.crypto import uacrypto
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.permission_rules import User, UserRole
from cryptography.x509.oid import ExtendedKeyUsageOID

from simulators.kinds import KINDS
from simulators.plant import Plant
from simulators.signals import AMBIENT_SIGNALS

__all__ = ["NAMESPACE_PREFIX", "OpcuaPlantServer", "SecurityMode", "node_id"]

log = logging.getLogger("plantwire.sim.opcua")
for noisy in ("asyncua", "asyncua.server", "asyncua.server.address_space"):
    logging.getLogger(noisy).setLevel(logging.WARNING)

SecurityMode = Literal["None", "Sign", "SignAndEncrypt"]
NAMESPACE_PREFIX = "urn:plantwire:sim:"

# Metric -> (OPC UA type, unit); process signals are Doubles with their kind's unit.
_STANDARD: dict[str, tuple[ua.VariantType, str | None]] = {
    "state": (ua.VariantType.UInt16, None),
    "product_code": (ua.VariantType.UInt16, None),
    "product": (ua.VariantType.String, None),
    "good_count": (ua.VariantType.UInt32, "parts"),
    "reject_count": (ua.VariantType.UInt32, "parts"),
    "cycle_count": (ua.VariantType.UInt32, "cycles"),
    "energy_wh": (ua.VariantType.UInt32, "Wh"),
    "power_w": (ua.VariantType.Int32, "W"),
    "run_seconds": (ua.VariantType.Int32, "s"),
    "stop_seconds": (ua.VariantType.Int32, "s"),
    "speed_pct": (ua.VariantType.Double, "%"),
    "energy_kwh": (ua.VariantType.Double, "kWh"),
    "running": (ua.VariantType.Boolean, None),
    "alarm": (ua.VariantType.Boolean, None),
    "guard_closed": (ua.VariantType.Boolean, None),
    "estop_ok": (ua.VariantType.Boolean, None),
}


def node_id(path: str, metric: str) -> str:
    """The string NodeId of a machine's metric: ``ns=2;s=<area>.<line>.<machine>.<metric>``."""
    return f"ns=2;s={path.replace('/', '.')}.{metric}"


@dataclass
class _Variable:
    machine: int
    metric: str
    node: Node
    variant_type: ua.VariantType


class _PasswordUsers:  # asyncua's UserManager protocol: get_user
    """Accept exactly the configured user names and passwords; no anonymous access."""

    def __init__(self, users: dict[str, str]) -> None:
        self.users = users

    def get_user(
        self,
        iserver: Any,
        username: str | None = None,
        password: str | None = None,
        certificate: Any = None,
    ) -> User | None:
        expected = self.users.get(username or "")
        if expected is None or password is None or not hmac.compare_digest(expected, password):
            return None
        return User(role=UserRole.User, name=username)


class _TrustedClients:
    """Accept a client certificate only if it is one of the trusted ones (compared as DER)."""

    def __init__(self, trusted: Iterable[bytes]) -> None:
        self.trusted = set(trusted)

    async def __call__(self, cert: Any, app_description: ua.ApplicationDescription) -> None:
        if uacrypto.der_from_x509(cert) not in self.trusted:
            raise ServiceError(ua.StatusCodes.BadCertificateUntrusted)


class OpcuaPlantServer:
    """Serve a :class:`Plant` at ``opc.tcp://host:port/plantwire``."""

    def __init__(
        self,
        plant: Plant,
        host: str = "127.0.0.1",
        port: int = 4840,
        *,
        security: SecurityMode = "None",
        cert_dir: Path | None = None,
        trusted_clients: list[Path] | None = None,
        users: dict[str, str] | None = None,
    ) -> None:
        self.plant = plant
        self.host = host
        self.port = port
        self.security = security
        self.cert_dir = cert_dir
        self.trusted_clients = trusted_clients or []
        self.users = users
        self.endpoint = f"opc.tcp://{host}:{port}/plantwire"
        self._server = Server(user_manager=_PasswordUsers(users) if users else None)
        self._variables: list[_Variable] = []
        self._written_version = -1
        self.namespace = NAMESPACE_PREFIX + plant.scenario.site.id

    @property
    def certificate_path(self) -> Path | None:
        return self.cert_dir / "server-cert.der" if self.cert_dir else None

    async def start(self) -> None:
        server = self._server
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name(f"PlantWire simulator ({self.plant.scenario.site.id})")
        await self._security(server)
        if self.users:
            server.set_identity_tokens([ua.UserNameIdentityToken])
        index = await server.register_namespace(self.namespace)
        if index != 2:
            raise RuntimeError(f"expected namespace index 2, got {index}")
        await self._address_space(server, index)
        await self.update(force=True)
        await server.start()
        log.info(
            "OPC UA on %s (security %s): %d variables",
            self.endpoint,
            self.security,
            len(self._variables),
        )

    async def _security(self, server: Server) -> None:
        if self.security == "None":
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
            return
        if self.cert_dir is None:
            raise ValueError("OPC UA security needs a folder for the server certificate (cert_dir)")
        self.cert_dir.mkdir(parents=True, exist_ok=True)
        key_file, cert_file = self.cert_dir / "server-key.pem", self.cert_dir / "server-cert.der"
        await setup_self_signed_certificate(
            key_file,
            cert_file,
            "urn:plantwire:simulator",
            self.host,
            [ExtendedKeyUsageOID.SERVER_AUTH],
            {"commonName": "PlantWire simulator", "organizationName": "PlantWire"},
        )
        await server.set_application_uri("urn:plantwire:simulator")
        await server.load_certificate(cert_file)
        await server.load_private_key(key_file)
        policy = (
            ua.SecurityPolicyType.Basic256Sha256_Sign
            if self.security == "Sign"
            else ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt
        )
        server.set_security_policy([policy])
        if self.trusted_clients:
            trusted = [
                uacrypto.der_from_x509(await uacrypto.load_certificate(path))
                for path in self.trusted_clients
            ]
            server.set_certificate_validator(_TrustedClients(trusted))

    async def _address_space(self, server: Server, ns: int) -> None:
        plant = self.plant
        site = await server.nodes.objects.add_object(
            ua.NodeId(plant.scenario.site.id, ns), plant.scenario.site.id
        )
        folders: dict[str, Node] = {}
        for machine in plant.machines:
            parent = site
            path = ""
            for level in (machine.line.area, machine.line.id, machine.spec.id):
                path = f"{path}.{level}" if path else level
                if path not in folders:
                    folders[path] = await parent.add_object(ua.NodeId(path, ns), level)
                parent = folders[path]
            kind = KINDS[machine.spec.kind]
            specs = {spec.name: spec for spec in (*kind.signals, *AMBIENT_SIGNALS)}
            for metric, value in plant.values(machine.index).items():
                if metric == "plc_clock_ns":
                    continue  # OPC UA carries time in every value's source timestamp
                variant_type, unit = _STANDARD.get(metric, (ua.VariantType.Double, None))
                spec = specs.get(metric)
                if spec is not None:
                    unit = spec.unit
                node = await parent.add_variable(
                    ua.NodeId(f"{path}.{metric}", ns),
                    metric,
                    ua.Variant(_initial(value, variant_type), variant_type),
                )
                if unit:
                    await node.add_property(
                        ns,
                        "EngineeringUnits",
                        ua.EUInformation(
                            DisplayName=ua.LocalizedText(unit), Description=ua.LocalizedText(unit)
                        ),
                    )
                if spec is not None and math.isfinite(spec.lo) and math.isfinite(spec.hi):
                    await node.add_property(ns, "EURange", ua.Range(spec.lo, spec.hi))
                self._variables.append(_Variable(machine.index, metric, node, variant_type))

    async def update(self, *, force: bool = False) -> int:
        """Write the plant's current values (once per plant step); returns how many were written."""
        plant = self.plant
        if plant.version == self._written_version and not force:
            return 0
        self._written_version = plant.version
        stamp = datetime.fromtimestamp(plant.now, UTC)
        values = [plant.values(index) for index in range(len(plant.machines))]
        server = self._server
        for variable in self._variables:
            value = values[variable.machine][variable.metric]
            status = ua.StatusCode(ua.StatusCodes.Good)
            if isinstance(value, float) and math.isnan(value):
                status = ua.StatusCode(ua.StatusCodes.BadSensorFailure)
            data = ua.DataValue(
                ua.Variant(_initial(value, variable.variant_type), variable.variant_type),
                StatusCode=status,
                SourceTimestamp=stamp,
                ServerTimestamp=stamp,
            )
            await server.write_attribute_value(variable.node.nodeid, data)
        return len(self._variables)

    async def stop(self) -> None:
        await self._server.stop()


def _initial(value: float | int | bool | str, variant_type: ua.VariantType) -> Any:
    if variant_type is ua.VariantType.Double:
        return float(value)
    return value
