"""Load a site file: YAML with line numbers, environment references, secrets kept out of the
file, typed validation, and checks across blocks. A bad file is refused whole, with every
problem found listed as ``file:line:column: path: what is wrong``."""

from __future__ import annotations

import difflib
import logging
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from plantwire.config.checks import check_site
from plantwire.config.common import RegistryUnion
from plantwire.config.ingest import INGEST_MODELS
from plantwire.config.models import SiteConfig
from plantwire.config.sources import SOURCE_MODELS
from plantwire.config.stores import STORE_MODELS
from plantwire.config.yamlsource import Path_, YamlDocument, format_path, read_yaml
from plantwire.errors import ConfigError, ConfigIssue

__all__ = ["SECRET_KEYS", "LoadedSite", "load_site", "load_site_file", "parse_site"]

log = logging.getLogger("plantwire.config")

# Keys whose values are secrets: they may only come from the environment or from a file.
SECRET_KEYS = frozenset({"password", "token"})
_MAX_SECRET_FILE = 64 * 1024


@dataclass(frozen=True)
class LoadedSite:
    """A validated site and where its secrets came from (for a masked summary)."""

    config: SiteConfig
    file: str
    secret_origins: dict[str, str] = field(default_factory=dict)  # path -> "$NAME" or "file PATH"
    warnings: list[ConfigIssue] = field(default_factory=list)  # read, but to be changed


# Store blocks from before the store: block (read as one, with a warning, until 0.3).
_OLD_STORE_BLOCKS = ("influxdb", "sqlite")


def load_site(path: str | Path, environ: Mapping[str, str] | None = None) -> SiteConfig:
    """Load and validate a site file; raise ConfigError listing every problem. What is read but
    deprecated is logged as a WARNING, once per load."""
    loaded = load_site_file(path, environ)
    for warning in loaded.warnings:
        log.warning("%s", warning)
    return loaded.config


def load_site_file(path: str | Path, environ: Mapping[str, str] | None = None) -> LoadedSite:
    file = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(
            [ConfigIssue(file, None, f"cannot read the file: {exc.strerror or exc}")]
        ) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError([ConfigIssue(file, line, "the file is not UTF-8 text")]) from None
    return parse_site(text, file, environ, base_dir=Path(path).parent)


def parse_site(
    text: str,
    file: str = "<site>",
    environ: Mapping[str, str] | None = None,
    *,
    base_dir: Path | None = None,
) -> LoadedSite:
    """Validate site YAML text (``file`` names it in messages)."""
    doc, issues = read_yaml(text, file, environ)
    if issues:
        raise ConfigError(issues)
    if not isinstance(doc.data, dict):
        raise ConfigError([doc.issue((), "a site file is a mapping that starts with 'site:'")])
    warnings = _old_store_block(doc)
    origins: dict[str, str] = {}
    issues = _resolve_secrets(doc, doc.data, (), origins, base_dir or Path())
    if issues:
        raise ConfigError(issues)
    try:
        config = SiteConfig.model_validate(doc.data)
    except ValidationError as exc:
        raise ConfigError(
            [_translate(doc, error) for error in exc.errors(include_url=False)]
        ) from None
    findings = check_site(config)
    if findings:
        raise ConfigError([doc.issue(path, message) for path, message in findings])
    return LoadedSite(config, file, origins, warnings)


def _old_store_block(doc: YamlDocument) -> list[ConfigIssue]:
    """Read a top-level ``influxdb:`` or ``sqlite:`` block as ``store: {backend: ...}``, with a
    warning that says what to write instead. Messages about its keys then name ``store.…``,
    at the lines of the old block."""
    data = doc.data
    old = [key for key in _OLD_STORE_BLOCKS if key in data]
    if not old:
        return []
    if len(old) > 1 or "store" in data:
        given = [key for key in ("store", *_OLD_STORE_BLOCKS) if key in data]
        raise ConfigError(
            [doc.issue((key,), f"one store only: {' and '.join(given)} given") for key in old]
        )
    key = old[0]
    block = data.pop(key)
    data["store"] = {"backend": key, **block} if isinstance(block, dict) else block
    for path, mark in list(doc.marks.items()):
        if path[:1] == (key,):
            doc.marks[("store", *path[1:])] = mark
    for path, name in list(doc.env_names.items()):
        if path[:1] == (key,):
            doc.env_names[("store", *path[1:])] = name
    return [
        doc.issue(
            ("store",),
            f"the {key}: block is deprecated and will be refused from PlantWire 0.3; write it "
            f"as store: with backend: {key} and the same keys (docs/config.md#store)",
        )
    ]


def _resolve_secrets(
    doc: YamlDocument, node: Any, path: Path_, origins: dict[str, str], base_dir: Path
) -> list[ConfigIssue]:
    """Refuse secrets written into the file; read ``<key>_file`` secrets into ``<key>``."""
    issues: list[ConfigIssue] = []
    if isinstance(node, list):
        for index, item in enumerate(node):
            issues += _resolve_secrets(doc, item, (*path, index), origins, base_dir)
    elif isinstance(node, dict):
        for key in list(node):
            child = (*path, key)
            if key in SECRET_KEYS:
                issues += _check_inline_secret(doc, node, key, child, origins)
            elif key.endswith("_file") and key.removesuffix("_file") in SECRET_KEYS:
                if key.removesuffix("_file") not in node:  # both given: reported with the key
                    issues += _read_secret_file(
                        doc, node, key, path, origins=origins, base_dir=base_dir
                    )
            else:
                issues += _resolve_secrets(doc, node[key], child, origins, base_dir)
    return issues


def _check_inline_secret(
    doc: YamlDocument, node: dict[str, Any], key: str, child: Path_, origins: dict[str, str]
) -> list[ConfigIssue]:
    if f"{key}_file" in node:
        return [doc.issue(child, f"give either {key} or {key}_file, not both")]
    if node[key] is None:
        return []
    if child not in doc.env_names:
        return [
            doc.issue(
                child,
                f"a {key} written in the site file is readable by anyone who can read "
                f"the file; use {key}: ${{ENV_VAR}} or {key}_file: PATH",
            )
        ]
    origins[format_path(child)] = f"${doc.env_names[child]}"
    return []


def _read_secret_file(
    doc: YamlDocument,
    node: dict[str, Any],
    key: str,
    path: Path_,
    *,
    origins: dict[str, str],
    base_dir: Path,
) -> list[ConfigIssue]:
    child = (*path, key)
    secret_key = key.removesuffix("_file")
    secret_path = Path(str(node[key]))
    if not secret_path.is_absolute():
        secret_path = base_dir / secret_path
    try:
        with secret_path.open("rb") as handle:
            content = handle.read(_MAX_SECRET_FILE + 1)
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte or a lone surrogate in the path
        reason = (exc.strerror if isinstance(exc, OSError) else None) or str(exc)
        return [doc.issue(child, f"cannot read secret file {str(secret_path)!r}: {reason}")]
    if len(content) > _MAX_SECRET_FILE:
        return [doc.issue(child, f"secret file {str(secret_path)!r} is larger than 64 KiB")]
    del node[key]
    node[secret_key] = content.decode("utf-8", errors="replace").rstrip("\r\n")
    line, column = doc.locate(child)
    if line is not None and column is not None:
        doc.marks[(*path, secret_key)] = (line, column)
    origins[format_path((*path, secret_key))] = f"file {secret_path}"
    return []


# -- turning pydantic's errors into plant-engineer messages ----------------------------------------


def _translate(doc: YamlDocument, error: Mapping[str, Any]) -> ConfigIssue:
    loc: tuple[Any, ...] = tuple(error["loc"])
    kind = error["type"]
    path = _data_path(doc.data, loc, keep_missing_last=kind in ("missing", "extra_forbidden"))
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    if kind == "missing":
        # The key is not in the file, so the issue points at the block that should hold it.
        return doc.issue(path, f"missing required key {path[-1]!r}" if path else message)
    if kind == "extra_forbidden":
        key = str(path[-1]) if path else "?"
        hint = ""
        allowed = _allowed_keys(loc[:-1])
        close = difflib.get_close_matches(key, allowed, n=1)
        if close:
            hint = f"; did you mean {close[0]!r}?"
        elif allowed:
            hint = f" (allowed: {', '.join(sorted(allowed))})"
        return doc.issue(path, f"unknown key {key!r}{hint}")
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        # A registry's block (a source's protocol, a store's backend) naming no known entry.
        context = error.get("ctx", {})
        key = str(context.get("discriminator", "protocol")).strip("'")
        known = ", ".join(repr(name) for name in _registered_names(key))
        if kind == "union_tag_invalid":
            return doc.issue((*path, key), f"{key} must be one of {known}")
        return doc.issue(path, f"missing required key {key!r} (one of {known})")
    given = error.get("input")
    secret = any(part in {"password", "token"} for part in path if isinstance(part, str))
    if (
        not secret
        and isinstance(given, str | int | float | bool)
        and kind not in ("value_error", "assertion_error")
    ):
        # A value from the environment is named, not shown: whether a variable holds a secret
        # is not ours to know, and a variable wired to the wrong key must not print its value.
        name = doc.env_names.get(path)
        message += f" (got the value of ${name})" if name else f" (got {given!r})"
    return doc.issue(path, message)


def _data_path(data: Any, loc: tuple[Any, ...], *, keep_missing_last: bool) -> Path_:
    """The path in the file for a pydantic location, dropping union tags that are not keys.

    Only a missing (or unknown) key may be absent from the data; any other location part that is
    not a key of the block is the tag pydantic adds for a discriminated union.
    """
    path: list[str | int] = []
    node = data
    for index, part in enumerate(loc):
        if isinstance(node, dict):
            if part in node:
                node = node[part]
            elif index != len(loc) - 1 or not keep_missing_last:
                continue
            else:
                node = None
            path.append(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
            path.append(part)
        else:
            path.append(part)
            node = None
    return tuple(path)


def _registered_names(key: str) -> list[str]:
    """The names a registry's key may take: a store's backend, an ingest rule's format, a
    source's protocol."""
    tables: dict[str, Iterable[str]] = {"backend": STORE_MODELS, "format": INGEST_MODELS}
    return sorted(tables.get(key, SOURCE_MODELS))


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """Keys the model at a pydantic location accepts (for did-you-mean hints); best effort."""
    annotation: Any = SiteConfig
    for part in loc:
        annotation = _unwrap(annotation, part)
        if annotation is None:
            return []
    annotation = _unwrap(annotation, None)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return []


def _union_member(annotation: Any, part: Any) -> Any:
    """The member of an Optional or a discriminated union that a location part selects."""
    members = [m for m in typing.get_args(annotation) if m is not type(None)]
    for member in members:
        fields = getattr(member, "model_fields", {})
        if "protocol" in fields and part in typing.get_args(fields["protocol"].annotation):
            return member
    if len(members) == 1:
        return _unwrap(members[0], part)
    return None if part is not None else annotation


def _unwrap(annotation: Any, part: Any) -> Any:  # noqa: PLR0911  (one return per type form)
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:  # a registry's block: whatever its table holds now
        marker = next((m for m in annotation.__metadata__ if isinstance(m, RegistryUnion)), None)
        if marker is not None:
            return _unwrap(marker.union(), part)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0], part)
    if origin in (typing.Union, types.UnionType):
        return _union_member(annotation, part)
    if part is None:
        return annotation
    if origin in (list, tuple) and isinstance(part, int):
        return typing.get_args(annotation)[0]
    if origin is dict:
        return typing.get_args(annotation)[1]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel) and isinstance(part, str):
        field_info = annotation.model_fields.get(part)
        return field_info.annotation if field_info is not None else None
    return None
