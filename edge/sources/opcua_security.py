"""Opening an OPC UA session, and what is read from the address space once per session.

Part of the OPC UA adapter (with :mod:`edge.sources.opcua`, which keeps the hot path): only these
two modules import asyncua. Here live server trust, user identity, the one-line reason a
connection could not be opened, namespace and property look-ups, and the address-space walk behind
``plantwire edge browse``.

Trust works the way plant engineers know from other OPC UA clients: the server's application
certificate must be one of the files listed in ``security.trust`` (or in a folder listed there);
anything else is refused before a secure channel is opened to it, and the refusal names the
certificate so the engineer can check it and put it where it belongs.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asyncua import Client, ua
from asyncua.crypto import security_policies, uacrypto
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from edge.sources.base import NotConnected
from plantwire.config.models import OpcuaSecurity

__all__ = [
    "CERTIFICATE_SUFFIXES",
    "BrowsedVariable",
    "browse_variables",
    "describe_certificate",
    "failure_reason",
    "first_certificate",
    "load_trusted",
    "open_client",
    "quiet_disconnect",
    "read_property",
    "resolve_nodes",
]

log = logging.getLogger("plantwire.edge.opcua")

_DER = Encoding.DER
# Sessions are never resumed (every connect starts afresh), so a server may forget a dead one
# soon; asyncua's default of an hour keeps a lost edge's monitored items alive on the PLC.
_SESSION_TIMEOUT_MS = 120_000
CERTIFICATE_SUFFIXES = frozenset({".der", ".pem", ".crt", ".cer"})
_POLICY = security_policies.SecurityPolicyBasic256Sha256
_MODES = {
    "Sign": ua.MessageSecurityMode.Sign,
    "SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt,
}
_IDENTITY_REFUSED = frozenset(
    {
        ua.StatusCodes.BadUserAccessDenied,
        ua.StatusCodes.BadIdentityTokenInvalid,
        ua.StatusCodes.BadIdentityTokenRejected,
    }
)
_CLIENT_CERT_REFUSED = frozenset(
    {
        ua.StatusCodes.BadCertificateUntrusted,
        ua.StatusCodes.BadSecurityChecksFailed,
        ua.StatusCodes.BadCertificateInvalid,
        ua.StatusCodes.BadCertificateRevoked,
        ua.StatusCodes.BadCertificateTimeInvalid,
        ua.StatusCodes.BadCertificateUriInvalid,
        ua.StatusCodes.BadCertificateUseNotAllowed,
    }
)


class _HideIdentityTokens(logging.Filter):
    """asyncua logs every request it sends at DEBUG, ActivateSession's identity token included --
    which carries the password in plain text on an unencrypted channel. Log its type only."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and any(isinstance(a, ua.ActivateSessionRequest) for a in args):
            record.args = tuple(
                type(a).__name__ if isinstance(a, ua.ActivateSessionRequest) else a for a in args
            )
        return True


class _QuietConnectionLoss(logging.Filter):
    """A lost connection is the runtime's to report, once. asyncua adds an ERROR with a traceback
    from its publish loop for the same event, and warnings while the dead session is closed."""

    NOISE = (
        "Publish iteration crashed",
        "close_session was called but connection is closed",
        "close_session but connection wasn't established",
        "close_secure_channel was called but connection is closed",
    )

    def filter(self, record: logging.LogRecord) -> bool:
        if not isinstance(record.msg, str) or not record.msg.startswith(self.NOISE):
            return True
        error = record.exc_info[1] if record.exc_info else None
        return error is not None and not isinstance(error, OSError)


logging.getLogger("asyncua.client.ua_client.UASocketProtocol").addFilter(_HideIdentityTokens())
for _name in ("asyncua.client.ua_session.UaSession", "asyncua.client.ua_client.UaClient"):
    logging.getLogger(_name).addFilter(_QuietConnectionLoss())


def _read_certificates(path: Path) -> list[x509.Certificate]:
    """The certificates in one DER or PEM file (a PEM file may hold several)."""
    data = path.read_bytes()
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_certificates(data)
    return [x509.load_der_x509_certificate(first_certificate(data))]


def load_trusted(paths: Sequence[Path]) -> dict[bytes, x509.Certificate]:
    """Every certificate in the trust list, by its DER bytes. A folder contributes its
    .der/.pem/.crt/.cer files; a missing path or a file that is no certificate is refused,
    because a typo in a trust list must not look like an untrusted server."""
    trusted: dict[bytes, x509.Certificate] = {}
    for path in paths:
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in CERTIFICATE_SUFFIXES)
        elif path.is_file():
            files = [path]
        else:
            raise NotConnected(f"trusted certificate path {path} does not exist")
        for file in files:
            try:
                certificates = _read_certificates(file)
            except (OSError, ValueError) as exc:
                raise NotConnected(
                    f"{file} in security.trust is not a DER or PEM certificate"
                ) from exc
            for certificate in certificates:
                trusted[certificate.public_bytes(_DER)] = certificate
    return trusted


def first_certificate(der: bytes) -> bytes:
    """The leading certificate of a DER blob that may carry its chain after it (servers send
    their certificate that way). Reads the outer SEQUENCE's length, short or long form."""
    if len(der) < 2 or der[0] != 0x30:
        return der
    if der[1] < 0x80:
        return der[: 2 + der[1]]
    width = der[1] & 0x7F
    length = int.from_bytes(der[2 : 2 + width], "big")
    return der[: 2 + width + length]


def describe_certificate(certificate: x509.Certificate) -> str:
    """Subject and SHA-1 thumbprint, as OPC UA tools show them."""
    thumbprint = hashlib.sha1(certificate.public_bytes(_DER), usedforsecurity=False).hexdigest()
    return (
        f"subject {certificate.subject.rfc4514_string()!r}, SHA-1 thumbprint {thumbprint.upper()}"
    )


def _application_uri(certificate: x509.Certificate) -> str | None:
    """The URI in the certificate's subjectAltName: servers check it against the client's
    ApplicationUri, so the client must present the same one."""
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return None
    uris = names.value.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


def _untrusted(certificate: x509.Certificate, trust: Sequence[Path]) -> str:
    folders = [str(p) for p in trust if p.is_dir()]
    where = (
        f"copy its certificate (DER or PEM) into {folders[0]}"
        if folders
        else "add its certificate file (DER or PEM) to security.trust"
    )
    return (
        f"the server certificate is not trusted ({describe_certificate(certificate)}); "
        f"if this is the right server, {where}"
    )


async def _secure(client: Client, security: OpcuaSecurity) -> None:
    """Choose the server's endpoint for the configured mode, refuse it unless its certificate
    is trusted, and open the secure channel to exactly that certificate."""
    assert security.cert_file is not None and security.key_file is not None  # model checks it
    trusted = load_trusted(security.trust)
    try:
        client_cert = _read_certificates(security.cert_file)[0]
        key = security.key_file.read_bytes()
    except (OSError, ValueError, IndexError) as exc:
        raise NotConnected(
            f"cannot load the client certificate {security.cert_file} or its key: {exc}"
        ) from exc
    mode = _MODES[security.mode]
    endpoints = await client.connect_and_get_server_endpoints()
    matching = [
        ep for ep in endpoints if ep.SecurityMode == mode and ep.SecurityPolicyUri == _POLICY.URI
    ]
    if not matching:
        offered = sorted(
            {
                # asyncua names the mode None_ (None is a Python keyword); say it as OPC UA does.
                f"{ep.SecurityPolicyUri.rsplit('#', 1)[-1]} {ep.SecurityMode.name.rstrip('_')}"
                for ep in endpoints
            }
        )
        raise NotConnected(
            f"the server offers no Basic256Sha256 {security.mode} endpoint "
            f"(it offers: {', '.join(offered) or 'nothing'})"
        )
    server_der = first_certificate(matching[0].ServerCertificate or b"")
    if server_der not in trusted:
        try:
            server_cert = x509.load_der_x509_certificate(server_der)
        except ValueError as exc:
            raise NotConnected("the server sent no valid certificate with its endpoint") from exc
        raise NotConnected(_untrusted(server_cert, security.trust))
    client.application_uri = _application_uri(client_cert) or client.application_uri
    await client.set_security(
        _POLICY,
        certificate=client_cert.public_bytes(_DER),
        private_key=uacrypto.CertProperties(
            key, extension="pem" if b"-----BEGIN" in key else "der"
        ),
        server_certificate=server_der,
        mode=mode,
    )


async def open_client(
    endpoint: str,
    *,
    security: OpcuaSecurity,
    username: str | None,
    password: str | None,
    timeout_s: float,
    on_lost: Callable[[Exception], Awaitable[None]] | None = None,
) -> Client:
    """Connect and activate a session, or raise :class:`NotConnected` with a one-line reason
    (after closing whatever was opened). ``on_lost`` is called when asyncua's connection
    watchdog finds the connection gone."""
    # The watchdog probes the server every interval, with the interval as its timeout: a busy
    # server must get the same patience as any other request.
    client = Client(endpoint, timeout=timeout_s, watchdog_intervall=max(timeout_s, 1.0))
    client.name = client.description = "PlantWire edge"
    client.session_timeout = _SESSION_TIMEOUT_MS
    client.application_uri = "urn:plantwire:edge"
    client.connection_lost_callback = on_lost
    if username is not None:
        client.set_user(username)
        if password is not None:
            client.set_password(password)
    try:
        if security.mode != "None":
            await _secure(client, security)
        await client.connect()
    except NotConnected:
        await quiet_disconnect(client, timeout_s)
        raise
    except (OSError, ua.UaError, ValueError) as exc:  # asyncua's and the socket's, translated
        await quiet_disconnect(client, timeout_s)
        raise NotConnected(failure_reason(exc, endpoint, security, username, timeout_s)) from exc
    return client


async def quiet_disconnect(client: Client, timeout_s: float) -> None:
    """Close session, channel and socket, whatever state they are in; never raises."""
    try:
        await asyncio.wait_for(client.disconnect(), timeout_s)
    except (OSError, ua.UaError, ValueError, RuntimeError):
        # Closing a connection that is already gone fails in many ways; it is closed either way.
        client.disconnect_socket()


def failure_reason(
    exc: BaseException,
    endpoint: str,
    security: OpcuaSecurity,
    username: str | None,
    timeout_s: float,
) -> str:
    """Why a connection failed, in one line a plant engineer can act on (never a password)."""
    if isinstance(exc, ua.UaStatusCodeError):
        name = ua.status_codes.get_name_and_doc(exc.code)[0]
        if exc.code in _IDENTITY_REFUSED:
            who = f"user {username!r}" if username else "anonymous access"
            return f"the server refused {who} ({name}): check username and password"
        if exc.code in _CLIENT_CERT_REFUSED:
            return (
                f"the server refused our client certificate {security.cert_file} ({name}): "
                "add it to the server's trusted certificates"
            )
        return f"the server answered {name}"
    if isinstance(exc, OSError):
        if isinstance(exc, ConnectionRefusedError):
            why = "connection refused (is the server running?)"
        elif isinstance(exc, TimeoutError):
            why = f"no answer within {timeout_s:g} s"
        else:
            why = exc.strerror or str(exc) or type(exc).__name__
        return f"cannot reach {endpoint}: {why}"
    return f"{type(exc).__name__}: {exc}"


# -- the address space, outside the hot path ------------------------------------------------------

_CHUNK = 1000  # nodes per Browse or Read request
_HAS_PROPERTY = ua.NodeId(ua.ObjectIds.HasProperty)
_SERVER_OBJECT = ua.NodeId(ua.ObjectIds.Server)


def _plain(node: ua.NodeId) -> ua.NodeId:
    """A reference's target (an ExpandedNodeId) as the NodeId requests take."""
    return ua.NodeId(node.Identifier, node.NamespaceIndex, node.NodeIdType)


async def resolve_nodes(client: Client, nodes: Sequence[ua.NodeId]) -> list[ua.NodeId | None]:
    """Node ids with their ``nsu=URI`` replaced by this server's namespace index (None where the
    server has no such namespace). Indexes can change when a server restarts; URIs do not."""
    uris: list[str] = []
    if any(getattr(node, "NamespaceUri", None) for node in nodes):
        uris = list(await client.get_namespace_array())
    resolved: list[ua.NodeId | None] = []
    for node in nodes:
        uri = getattr(node, "NamespaceUri", None)
        if not uri:
            resolved.append(node)
        else:
            index = uris.index(uri) if uri in uris else None
            resolved.append(
                None if index is None else ua.NodeId(node.Identifier, index, node.NodeIdType)
            )
    return resolved


async def _browse(client: Client, descriptions: list[ua.BrowseDescription]) -> list[list[Any]]:
    """The references of many nodes, in batched Browse (and BrowseNext) requests."""
    references: list[list[Any]] = []
    for start in range(0, len(descriptions), _CHUNK):
        params = ua.BrowseParameters()
        params.NodesToBrowse = descriptions[start : start + _CHUNK]
        for result in await client.uaclient.browse(params):
            found = list(result.References or ())
            point = result.ContinuationPoint
            while point:
                more = ua.BrowseNextParameters(ContinuationPoints=[point])
                (following,) = await client.uaclient.browse_next(more)
                found.extend(following.References or ())
                point = following.ContinuationPoint
            references.append(found)
    return references


async def read_property(
    client: Client, nodes: Sequence[ua.NodeId | None], name: str
) -> dict[int, Any]:
    """The value of the property called ``name`` (EURange, EngineeringUnits) of each node that
    has one, by the node's position in ``nodes``: one batched browse, one batched read."""
    wanted = [(i, node) for i, node in enumerate(nodes) if node is not None]
    references = await _browse(
        client,
        [
            ua.BrowseDescription(
                NodeId=node,
                ReferenceTypeId=_HAS_PROPERTY,
                IncludeSubtypes=True,
                NodeClassMask=ua.NodeClass.Variable,
                ResultMask=ua.BrowseResultMask.BrowseName,
            )
            for _, node in wanted
        ],
    )
    found = [
        (i, _plain(ref.NodeId))
        for (i, _), refs in zip(wanted, references, strict=True)
        for ref in refs
        if ref.BrowseName.Name == name
    ]
    values: dict[int, Any] = {}
    for start in range(0, len(found), _CHUNK):
        chunk = found[start : start + _CHUNK]
        read = await client.uaclient.read_attributes([n for _, n in chunk], ua.AttributeIds.Value)
        for (i, _), value in zip(chunk, read, strict=True):
            if value.StatusCode is None or value.StatusCode.is_good():
                values[i] = value.Value.Value if value.Value is not None else None
    return values


@dataclass(frozen=True)
class BrowsedVariable:
    """A variable found by :func:`browse_variables`, under the objects on its path."""

    path: tuple[str, ...]  # browse names of the objects from the root down to its parent
    parent: str  # the parent object's node id
    name: str  # its browse name
    node: str  # its node id, as a site file writes it
    unit: str | None  # from its EngineeringUnits property


async def browse_variables(client: Client, root: str | None, depth: int) -> list[BrowsedVariable]:
    """Walk objects (and folders) from ``root`` (default: the Objects folder) down ``depth``
    levels and list the variables on the way; properties and the standard Server object are
    left out. One batched Browse per level keeps a large address space quick."""
    try:
        start = ua.NodeId.from_string(root) if root else ua.NodeId(ua.ObjectIds.ObjectsFolder)
    except (ua.UaError, ValueError) as exc:
        raise ValueError(f"root {root!r} is not a NodeId like 'ns=2;s=Line1' or 'i=85'") from exc
    level: list[tuple[ua.NodeId, tuple[str, ...]]] = [(start, ())]
    seen = {start, _SERVER_OBJECT}
    found: list[tuple[tuple[str, ...], ua.NodeId, str, ua.NodeId]] = []
    for _ in range(depth):
        descriptions = [
            ua.BrowseDescription(
                NodeId=node,
                ReferenceTypeId=ua.NodeId(ua.ObjectIds.HierarchicalReferences),
                IncludeSubtypes=True,
                NodeClassMask=ua.NodeClass.Object | ua.NodeClass.Variable,
                ResultMask=ua.BrowseResultMask.All,
            )
            for node, _ in level
        ]
        next_level = []
        for (parent, path), refs in zip(level, await _browse(client, descriptions), strict=True):
            for ref in refs:
                child = _plain(ref.NodeId)
                if child in seen or ref.ReferenceTypeId == _HAS_PROPERTY:
                    continue
                seen.add(child)
                if ref.NodeClass == ua.NodeClass.Object:
                    next_level.append((child, (*path, ref.BrowseName.Name)))
                elif ref.NodeClass == ua.NodeClass.Variable:
                    found.append((path, parent, ref.BrowseName.Name, child))
        level = next_level
    units = await read_property(client, [node for *_, node in found], "EngineeringUnits")
    return [
        BrowsedVariable(path, parent.to_string(), name, node.to_string(), _unit_text(units.get(i)))
        for i, (path, parent, name, node) in enumerate(found)
    ]


def _unit_text(unit: Any) -> str | None:
    """An EUInformation's display name (what the unit is called), else its description."""
    for text in (getattr(unit, "DisplayName", None), getattr(unit, "Description", None)):
        if text is not None and text.Text:
            return str(text.Text)
    return None
