"""The OPC UA source block: an OPC UA server, by subscription or by polling.

Registered in :mod:`plantwire.config.sources`; the driver is :mod:`edge.sources.opcua`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, Field, SecretStr, model_validator

from plantwire.config.common import Block, DeadbandKind, Seconds, SourceConfig, SourceTag

__all__ = ["OpcuaSecurity", "OpcuaSource", "OpcuaTag"]

_NODE_ID = re.compile(
    r"^(ns=\d+;)?(i=\d+|s=.+|g=[0-9a-fA-F-]{36}|b=[A-Za-z0-9+/=]+)$|^nsu=[^;]+;(i|s|g|b)=.+$"
)


def _check_node_id(value: str) -> str:
    if not _NODE_ID.match(value):
        raise ValueError(
            f"node {value!r} is not an OPC UA NodeId like 'ns=2;s=Filler.Temp' or 'ns=3;i=1042'"
        )
    return value


class OpcuaTag(SourceTag):
    node: Annotated[str, AfterValidator(_check_node_id)]
    deadband_kind: DeadbandKind = DeadbandKind.ABSOLUTE
    sampling_interval_ms: Annotated[float, Field(ge=0, le=3_600_000)] | None = None
    # status_value_timestamp: every new source timestamp is reported, changed value or not
    trigger: Literal["status_value", "status_value_timestamp"] = "status_value"


class OpcuaSecurity(Block):
    """Message security. Sign and SignAndEncrypt need the client's certificate and key and at
    least one trusted server certificate (a file, or a folder of them)."""

    mode: Literal["None", "Sign", "SignAndEncrypt"] = "None"
    policy: Literal["Basic256Sha256"] = "Basic256Sha256"
    cert_file: Path | None = None
    key_file: Path | None = None
    trust: list[Path] = Field(default_factory=list)

    @model_validator(mode="after")
    def _files(self) -> OpcuaSecurity:
        if self.mode != "None":
            if self.cert_file is None or self.key_file is None:
                raise ValueError(f"security mode {self.mode} needs cert_file and key_file")
            if not self.trust:
                raise ValueError(
                    f"security mode {self.mode} needs trust: the server certificate(s) to accept"
                )
        return self


class OpcuaSource(SourceConfig):
    """An OPC UA server. ``mode: subscribe`` uses monitored items; ``poll`` reads on a timer for
    servers whose subscriptions are unreliable."""

    protocol: Literal["opcua"]
    endpoint: Annotated[str, Field(pattern=r"^opc\.tcp://[^/\s]+(/\S*)?$")]
    security: OpcuaSecurity = Field(default_factory=OpcuaSecurity)
    username: str | None = None
    password: SecretStr | None = None
    mode: Literal["subscribe", "poll"] = "subscribe"
    publishing_interval_ms: Annotated[float, Field(gt=0, le=3_600_000)] = 1000.0
    sampling_interval_ms: Annotated[float, Field(ge=0, le=3_600_000)] = 500.0
    poll_interval_s: Seconds = 1.0
    queue_size: Annotated[int, Field(ge=1, le=10_000)] = 10
    max_items_per_subscription: Annotated[int, Field(ge=1, le=100_000)] = 1000
    timeout_s: Seconds = 5.0
    tags: list[OpcuaTag] = Field(min_length=1)

    example: ClassVar[dict[str, object]] = {
        "protocol": "opcua",
        "endpoint": "opc.tcp://127.0.0.1:1",
        "timeout_s": 1.0,
        "tags": [{"metric": "temperature", "node": "ns=2;s=Filler.Temp"}],
    }

    @model_validator(mode="after")
    def _identity(self) -> OpcuaSource:
        if self.password is not None and self.username is None:
            raise ValueError("a password without a username cannot be used; add username")
        return self

    def connection_key(self) -> tuple[object, ...]:
        # One session per endpoint and identity: machines on one server share it.
        password = self.password.get_secret_value() if self.password else None
        return (self.endpoint, self.security.model_dump_json(), self.username, password)

    def describe(self) -> str:
        security: str = self.security.mode
        if security != "None":
            security += f"/{self.security.policy}"
        return f"opcua {self.endpoint} [{security}, {self.mode}]: {len(self.tags)} tags"

    def login(self) -> tuple[str, SecretStr | None] | None:
        return (self.username, self.password) if self.username else None
