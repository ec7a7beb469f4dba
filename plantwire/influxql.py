"""Quoting for InfluxQL, the query language InfluxDB 1.x, 2.x (v1 API) and 3.x all answer."""

from __future__ import annotations

__all__ = ["quote_ident", "quote_literal"]


def quote_ident(name: str) -> str:
    """Quote a measurement, tag or field name.

    >>> quote_ident('tank "A"')
    '"tank \\\\"A\\\\""'
    """
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_literal(value: str) -> str:
    """Quote a string literal (a tag value in a WHERE clause).

    >>> quote_literal("O'Brien line")
    "'O\\\\'Brien line'"
    """
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
