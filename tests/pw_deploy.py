"""Shared pieces of the deployment tests: where deploy/ is, the two sites the broker tests use,
the programs they run, and the ACL recipe docs/deploy.md gives for a second site."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from conftest import missing_server

from plantwire.testing.servers import ServerMissingError, find_binary

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
