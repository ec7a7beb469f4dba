"""Hostile site files, as hypothesis strategies: the shipped examples mutated as text (lines
deleted, repeated, re-indented; YAML tags, anchors, aliases, environment references inserted)
and as data (keys deleted, renamed, added; values retyped; list items repeated, so ids clash),
random YAML documents, and any text or bytes. Each comes with an environment holding secrets
and the secret values a refusal must never repeat.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import yaml
from hypothesis import strategies as st
from pydantic import BaseModel

from plantwire.config import models
from plantwire.config.loader import SECRET_KEYS
from plantwire.testing.fuzz_inputs import (
    AWKWARD_TEXT,
    CHARACTERS,
    mutated_bytes,
    mutated_texts,
    mutated_trees,
    tree_containers,
    tree_slots,
)

__all__ = ["SECRET_ENV", "SiteCase", "site_bytes", "site_cases"]

# Secrets the loader must never repeat; the values are distinctive so a leak cannot hide, and
# one is text YAML would read as a broken date if it were written unquoted.
SECRET_ENV = {"PW_SECRET_1": "sEcReT-hunter2-Σ", "PW_SECRET_2": "2099-13-45"}
_ENV_VALUES = [
    "2024-13-45",
    "0b_",
    "1_000",
    ".inf",
    "~",
    "yes",
    "0x1F",
    "1e400",
    "12:30",
    "[a, b]",
    "{a: 1}",
    "a\nb",
    "'",
    "*a",
    "!!int x",
    "${PW_HOST}",
    "",
    " ",
    "America",  # a folder of the zone database
    "Asia/Ho_Chi_Minh",
    "x" * 300,
]
# What a ``password_file`` may wrongly hold: no file, a folder, bytes open() refuses.
_SECRET_PATHS = ["missing.secret", "", "/", ".", "a\x00b", "\ud800", "x" * 5000]
_YAML_TOKENS = [
    ": ",
    "- ",
    "\n",
    "\t",
    "#",
    "'",
    '"',
    "{",
    "}",
    "[",
    "]",
    ",",
    "? ",
    "|",
    ">",
    "&a ",
    "*a",
    "<<: *a",
    "&b [*b]",
    "!!int ",
    "!!float ",
    "!!timestamp ",
    "!!binary ",
    "!!str ",
    "!!null ",
    "!!set ",
    "!!omap ",
    "!!python/object:os.system ",
    "!custom ",
    "%YAML 1.1\n---\n",
    "---\n",
    "...\n",
    "${PW_HOST}",
    "${PW_PORT}",
    "${PW_WEIRD}",
    "${PW_UNSET}",
    "${PW_UNSET:-x}",
    "${PW_EMPTY:-}",
    "${",
    "${}",
    "${1BAD}",
    "$$",
    "$${PW_HOST}",
    "2024-13-45",
    "12:30",
    "0x",
    "1e400",
    ".nan",
    "~",
    "yes",
    "\x00",
    "\ufeff",
    "\x85",
    "\u2028",
    "\\",
    '"\\ud800"',
    "[" * 150,
    "password_file: a\\0b",
]


class SiteCase:
    """A site file's text, the environment it is read in, and the secret values that must not
    appear in a refusal (those only ever referenced as a whole ``password``/``token`` value)."""

    __slots__ = ("environ", "protected", "text")

    def __init__(self, text: str, environ: dict[str, str], protected: tuple[str, ...]) -> None:
        self.text = text
        self.environ = environ
        self.protected = protected

    def __repr__(self) -> str:
        return f"SiteCase(text={self.text!r}, environ={self.environ!r})"


def _model_keys() -> list[str]:
    keys: set[str] = set(SECRET_KEYS) | {f"{key}_file" for key in SECRET_KEYS}
    for value in vars(models).values():
        if isinstance(value, type) and issubclass(value, BaseModel):
            keys.update(value.model_fields)
    return sorted(keys)


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(),
    AWKWARD_TEXT,
    st.sampled_from(_ENV_VALUES),
    st.sampled_from([f"${{{name}}}" for name in ("PW_HOST", "PW_PORT", "PW_WEIRD", "PW_UNSET")]),
    st.dates(),
    st.datetimes(),
    st.binary(max_size=8),
)
_yaml_values = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(_model_keys()) | AWKWARD_TEXT, children, max_size=4)
    ),
    max_leaves=20,
)
_keys = st.sampled_from(_model_keys()) | AWKWARD_TEXT | st.integers(-3, 3) | st.none()


def _dump(draw: st.DrawFn, tree: Any) -> str:
    return yaml.safe_dump(
        tree,
        sort_keys=False,
        allow_unicode=draw(st.booleans()),
        default_flow_style=draw(st.sampled_from([False, None, True])),
    )


def _environ(draw: st.DrawFn) -> dict[str, str]:
    weird = draw(st.sampled_from(_ENV_VALUES) | st.text(CHARACTERS.filter(_no_surrogate)))
    return {"PW_HOST": "broker.plant", "PW_PORT": "1883", "PW_EMPTY": "", "PW_WEIRD": weird} | (
        SECRET_ENV
    )


def _no_surrogate(character: str) -> bool:
    return not "\ud800" <= character <= "\udfff"  # an environment cannot hold one


def _protected(tree: Any) -> tuple[str, ...]:
    """The secrets referenced nowhere but as a whole ``password``/``token`` value."""
    leaked = set()
    for parent, key in tree_slots(tree):
        texts = [(key, False), (parent[key], isinstance(parent, dict) and key in SECRET_KEYS)]
        for text, at_secret_key in texts:
            for name in SECRET_ENV:
                whole = at_secret_key and text == f"${{{name}}}"
                if isinstance(text, str) and name in text and not whole:
                    leaked.add(name)
    return tuple(value for name, value in SECRET_ENV.items() if name not in leaked)


@st.composite
def _site_from_tree(draw: st.DrawFn, base: Any) -> SiteCase:
    tree = copy.deepcopy(base)
    for _ in range(draw(st.integers(0, 2))):  # secrets where they belong, then the mutations
        mapping = draw(st.sampled_from(tree_containers(tree, dict) or [{}]))
        key = draw(st.sampled_from(sorted(SECRET_KEYS)))
        if draw(st.booleans()):
            mapping[key] = f"${{{draw(st.sampled_from(sorted(SECRET_ENV)))}}}"
        else:
            mapping[f"{key}_file"] = draw(st.sampled_from(_SECRET_PATHS) | AWKWARD_TEXT)
    tree = draw(mutated_trees(tree, _yaml_values, _keys))
    return SiteCase(_dump(draw, tree), _environ(draw), _protected(tree))


@st.composite
def _site_from_text(draw: st.DrawFn, texts: st.SearchStrategy[str]) -> SiteCase:
    return SiteCase(draw(texts), _environ(draw), tuple(SECRET_ENV.values()))


@st.composite
def _random_document(draw: st.DrawFn) -> Any:
    tree = draw(_yaml_values)
    if draw(st.booleans()):  # shaped like a site at the top, random below
        tree = {"site": tree, "areas": draw(_yaml_values)}
    return tree


def site_cases(examples: Sequence[str]) -> st.SearchStrategy[SiteCase]:
    """Site files: the examples mutated as text and as data, random YAML documents, and any
    text at all. Every case is read with secrets in its environment."""
    bases = [yaml.safe_load(text) for text in examples]
    tokens = st.lists(st.sampled_from(_YAML_TOKENS) | AWKWARD_TEXT, max_size=20).map("".join)
    return st.one_of(
        _site_from_text(mutated_texts(examples, _YAML_TOKENS)),
        st.sampled_from(bases).flatmap(_site_from_tree),
        _random_document().flatmap(_site_from_tree),
        _site_from_text(tokens | st.text(CHARACTERS)),
    )


def site_bytes(examples: Sequence[str]) -> st.SearchStrategy[bytes]:
    """Site files as bytes: mutated UTF-8, other encodings, a byte-order mark, any bytes."""
    encoded = [text.encode() for text in examples]
    seeds = st.sampled_from(
        [
            *encoded,
            *(b"\xef\xbb\xbf" + data for data in encoded),
            *(text.encode("utf-16") for text in examples),
            *(text.encode("latin-1", errors="replace") for text in examples),
        ]
    )
    return mutated_bytes(seeds) | st.binary(max_size=400)
