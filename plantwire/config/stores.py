"""The store block of the site file (``store:``): which backend keeps the time series, and its
settings. One plain table maps ``backend`` to its model; the backend's code (its reads and the
gateway's writes) is in :mod:`plantwire.store.registry`. Adding a backend: docs/extending.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, SecretStr, model_validator

from plantwire.config.common import Block, RegistryUnion, Seconds, split_url

__all__ = [
    "STORE_MODELS",
    "AnyStore",
    "InfluxConfig",
    "SqliteConfig",
    "StoreConfig",
    "register_store_model",
    "unregister_store_model",
]

_HTTP_SCHEMES = {"http": 8086, "https": 8086}


def _influx_url(url: str) -> str:
    split_url(url, _HTTP_SCHEMES, "influxdb")
    return url


class StoreConfig(Block):
    """What every store block has: the backend it names."""

    backend: str

    def describe(self) -> str:
        """What the store is, for log lines and errors (never a secret)."""
        return self.backend


class InfluxConfig(StoreConfig):
    """Where telemetry is written. ``api: v1`` is InfluxDB 1.x (``/write``, database and
    retention policy); ``api: v2`` is InfluxDB 2.x/3.x through influxdb-client (org, bucket, token).
    """

    backend: Literal["influxdb"] = "influxdb"
    url: Annotated[str, AfterValidator(_influx_url)] = "http://localhost:8086"
    api: Literal["v1", "v2"] = "v1"
    database: str | None = None
    retention_policy: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    org: str | None = None
    bucket: str | None = None
    token: SecretStr | None = None
    timeout_s: Seconds = 10.0

    @model_validator(mode="after")
    def _api(self) -> InfluxConfig:
        if self.api == "v1":
            if not self.database:
                raise ValueError("api v1 needs a database (and optionally retention_policy)")
            if self.org or self.bucket or self.token:
                raise ValueError("org, bucket and token belong to api v2; with api v1 use database")
        else:
            missing = [key for key in ("org", "bucket", "token") if not getattr(self, key)]
            if missing:
                raise ValueError(
                    f"api v2 needs {', '.join(missing)} "
                    "(the token as ${ENV_VAR} or token_file: PATH)"
                )
            if self.database or self.retention_policy:
                raise ValueError(
                    "database and retention_policy belong to api v1; with api v2 use bucket"
                )
        return self

    def describe(self) -> str:
        return f"InfluxDB {self.url}"


class SqliteConfig(StoreConfig):
    """The embedded store: one SQLite file, for a demo or a small site without InfluxDB."""

    backend: Literal["sqlite"] = "sqlite"
    path: Path = Path("plantwire-store.db")

    def describe(self) -> str:
        return f"SQLite {self.path}"


STORE_MODELS: dict[str, type[StoreConfig]] = {
    "influxdb": InfluxConfig,
    "sqlite": SqliteConfig,
}


# The site's store block, any registered backend's.
AnyStore = Annotated[StoreConfig, RegistryUnion(STORE_MODELS, "backend")]


def register_store_model(backend: str, model: type[StoreConfig]) -> None:
    """Add a backend's block at run time (a plugin, a test); its code goes to
    :func:`plantwire.store.registry.register_backend`."""
    STORE_MODELS[backend] = model
    _rebuild()


def unregister_store_model(backend: str) -> None:
    STORE_MODELS.pop(backend, None)
    _rebuild()


def _rebuild() -> None:
    from plantwire.config import models

    models.SiteConfig.model_rebuild(force=True)
