"""Shared pieces of the deployment tests: where deploy/ is, the two sites the broker tests use,
the programs they run, the ACL recipe docs/deploy.md gives for a second site, and deploy's own
Mosquitto config run on a free port with certificates from deploy/certs/make-certs.sh."""

from __future__ import annotations

import re
import subprocess
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from conftest import missing_server

from plantwire.testing.servers import Mosquitto, ServerMissingError, find_binary, free_port

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
COMPOSE_SCHEMA = REPO / "tests" / "data" / "compose_spec.json"

SITE_A = "binh-duong"  # the site deploy/mosquitto/acl ships with
SITE_B = "long-an"  # a second site, added as docs/deploy.md says: a copy of the site's block
ROLES = ("edge", "gateway", "analytics", "viewer")
# Mosquitto 2.0.11 answers a bad login with "Not authorized"; later releases may say "Bad user
# name or password". Either is a refusal by the broker's password check.
LOGIN_REFUSED = {"Not authorized", "Bad user name or password"}


def tool(name: str) -> str:
    """A program the deployment tests run; missing fails under CI and skips elsewhere."""
    try:
        return find_binary(name)
    except ServerMissingError:
        missing_server(
            ServerMissingError(
                f"{name} is not installed (Debian: apt-get install mosquitto openssl)"
            )
        )
        raise  # unreachable: missing_server always raises


def site_block(acl: str, site: str) -> str:
    """The lines of one site in the ACL, between its two rulers."""
    found = re.search(
        rf"^# =+ site {re.escape(site)} =+\n.*?^# =+ end of site {re.escape(site)} =+\n",
        acl,
        flags=re.MULTILINE | re.DOTALL,
    )
    assert found, f"deploy/mosquitto/acl has no block for site {site}"
    return found.group(0)


def add_site(acl: str, template_site: str, new_site: str) -> str:
    """docs/deploy.md's recipe: copy a site's block and put the new site id in the copy."""
    block = site_block(acl, template_site)
    return acl + "\n" + block.replace(template_site, new_site)


def make_certs(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    tool("openssl")
    return subprocess.run(
        [str(DEPLOY / "certs" / "make-certs.sh"), "-o", str(folder), *args],
        capture_output=True,
        text=True,
        check=False,
    )


# -- deploy/mosquitto, run by Debian's broker --------------------------------------------------------


def broker_config(text: str, *, port: int, root: Path) -> str:
    """deploy's mosquitto.conf as a test runs it: the container's three path prefixes moved under
    ``root`` and the TLS listener on a free loopback port. Everything else stays as shipped."""
    listeners = re.findall(r"^listener .*$", text, flags=re.MULTILINE)
    assert listeners == ["listener 8883"], f"expected the one TLS listener, found {listeners}"
    text = text.replace("listener 8883", f"listener {port} 127.0.0.1")
    for prefix, folder in (
        ("/mosquitto/config/", "config"),
        ("/mosquitto/data/", "data"),
        ("/run/secrets/", "secrets"),
    ):
        text = text.replace(prefix, f"{root / folder}/")
    left = re.findall(r"^\S+ /(?!" + re.escape(str(root).lstrip("/")) + r").*$", text, re.MULTILINE)
    assert not left, f"paths the test does not know how to move: {left}"
    # Debian's broker started as root drops to the 'mosquitto' user, which could not read the
    # test's files; the container runs it as that user anyway.
    return "user root\n" + text


@dataclass(frozen=True)
class DeployedBroker:
    port: int
    tls: Path  # the certificates make-certs.sh made: ca.crt, client.crt, client.key, ...
    passwords: Mapping[str, str]  # MQTT user -> password

    def password(self, role: str, site: str) -> str:
        return self.passwords[f"{role}-{site}"]


class DeployMosquitto(Mosquitto):
    """Debian's mosquitto running a given config file instead of the harness's own."""

    def __init__(self, workdir: Path, port: int, config_text: str) -> None:
        super().__init__(workdir, port=port, anonymous=False, default_listener=False)
        self._deployed_config = config_text

    def _config_text(self) -> str:
        return self._deployed_config


@contextmanager
def deployed_broker(
    root: Path, server_names: Sequence[str] = ("DNS:localhost", "IP:127.0.0.1")
) -> Iterator[DeployedBroker]:
    """deploy/mosquitto with certificates from deploy/certs/make-certs.sh (the broker's naming
    ``server_names``, and one client certificate ``client``), a password for every role of
    sites A and B, and the ACL extended by a second site; stopped when the block ends."""
    passwd = tool("mosquitto_passwd")
    tls = root / "secrets"
    for args in (["ca"], ["server", "broker", *server_names], ["client", "client"]):
        made = make_certs(tls, *args)
        assert made.returncode == 0, made.stderr

    passwords = {f"{role}-{site}": uuid.uuid4().hex for role in ROLES for site in (SITE_A, SITE_B)}
    password_file = tls / "mosquitto-passwd"
    for number, (user, password) in enumerate(passwords.items()):
        create = ["-c"] if number == 0 else []
        subprocess.run([passwd, "-b", *create, str(password_file), user, password], check=True)

    (root / "config").mkdir()
    (root / "data").mkdir()
    acl = (DEPLOY / "mosquitto" / "acl").read_text()
    (root / "config" / "acl").write_text(add_site(acl, SITE_A, SITE_B))
    port = free_port()
    config = broker_config(
        (DEPLOY / "mosquitto" / "mosquitto.conf").read_text(), port=port, root=root
    )
    try:
        server = DeployMosquitto(root / "run", port, config)
    except ServerMissingError as exc:
        missing_server(exc)
        raise  # unreachable: missing_server always raises
    with server:
        yield DeployedBroker(port, tls, passwords)
