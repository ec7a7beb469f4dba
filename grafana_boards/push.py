"""Upload boards to a Grafana through its HTTP API (``POST /api/dashboards/db``), with the
standard library only: pushing boards adds nothing to a PlantWire install.

Each board is saved with ``overwrite`` (the uid is the board's identity, so pushing again updates
it) into the folder given by uid, or the General folder. Authentication is a service account
token (``Authorization: Bearer``) or a user and password (basic auth). Any answer but success,
and a Grafana that cannot be reached, raise :class:`PushError` naming the board and what to check.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from grafana_boards.model import Board
from plantwire.errors import PlantWireError

__all__ = ["GrafanaAuth", "PushError", "PushResult", "push_board"]

API_PATH = "/api/dashboards/db"
HINTS = {
    401: "check the token (--token or GRAFANA_TOKEN) or the user and password",
    403: "the token or user may not save dashboards (it needs the Editor role or better)",
    404: "no such folder (--folder-uid), or the URL is not Grafana's",
    412: "a dashboard with the same name exists in the folder",
}


class PushError(PlantWireError):
    """A board Grafana did not save, or a Grafana that could not be reached."""


@dataclass(frozen=True)
class GrafanaAuth:
    """A token, or a user and password; neither means anonymous access."""

    token: str | None = None
    user: str | None = None
    password: str | None = None

    def headers(self) -> dict[str, str]:
        if self.token:
            return {"Authorization": f"Bearer {self.token}"}
        if self.user is not None:
            pair = f"{self.user}:{self.password or ''}".encode()
            return {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}
        return {}


@dataclass(frozen=True)
class PushResult:
    """What Grafana answered for a saved board."""

    uid: str
    url: str
    version: int


def _message(body: bytes) -> str:
    """Grafana's own message from an error body (JSON ``{"message": ...}``), else the text."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        parsed = json.loads(text)
    except ValueError:
        return text[:200]
    message = parsed.get("message") if isinstance(parsed, dict) else None
    return message if isinstance(message, str) else text[:200]


def push_board(
    url: str,
    board: Board,
    auth: GrafanaAuth,
    *,
    folder_uid: str | None = None,
    timeout_s: float = 30.0,
) -> PushResult:
    """Save ``board`` in the Grafana at ``url`` (``http://grafana:3000``)."""
    payload: dict[str, Any] = {
        "dashboard": board.render(),
        "overwrite": True,
        "message": "plantwire grafana push",
    }
    if folder_uid:
        payload["folderUid"] = folder_uid
    endpoint = url.rstrip("/") + API_PATH
    request = urllib.request.Request(  # noqa: S310 - the URL is the operator's own Grafana
        endpoint,
        data=json.dumps(payload).encode(),
        headers={
            "Content-Type": "application/json",
            "Accept": "application/json",
            **auth.headers(),
        },
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        hint = HINTS.get(exc.code)
        detail = f"Grafana answered HTTP {exc.code}: {_message(exc.read())}"
        raise PushError(f"{board.uid}: {detail}" + (f" ({hint})" if hint else "")) from exc
    except urllib.error.URLError as exc:
        raise PushError(f"{board.uid}: cannot reach Grafana at {url}: {exc.reason}") from exc
    except OSError as exc:  # a reset or a timeout while the answer was read
        raise PushError(f"{board.uid}: cannot reach Grafana at {url}: {exc}") from exc
    except ValueError as exc:
        raise PushError(f"{board.uid}: Grafana at {url} answered no JSON: {exc}") from exc
    if not isinstance(answer, dict):
        raise PushError(f"{board.uid}: Grafana at {url} answered {answer!r}, not a saved board")
    return PushResult(
        uid=str(answer.get("uid", board.uid)),
        url=str(answer.get("url", "")),
        version=int(answer.get("version", 0)),
    )
