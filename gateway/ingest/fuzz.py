"""The gateway's ingest fuzz targets: each format's decoder fed valid messages mutated as bytes
and as JSON, any JSON and any bytes, on its rule's topic.

They keep the contract of :mod:`plantwire.testing.fuzz` -- a message becomes samples that can be
written, or dead letters with a one-line reason; never an exception -- and run beside its
targets in ``tests/unit/test_fuzz_inputs.py`` and ``bench/fuzz.py``. They live here because the
contract package imports no part. Needs the dev tools (hypothesis): never imported by the
gateway.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import strategies as st

from gateway.ingest.decoder import IngestDecoder
from plantwire.config import parse_site
from plantwire.lineprotocol import LineEncoder
from plantwire.lineprotocol_parse import parse_body
from plantwire.testing.fuzz import ACCEPTED, FuzzTarget, UnclearError, check_message
from plantwire.testing.fuzz_inputs import arbitrary_json, mutated_bytes, mutated_trees

__all__ = ["ingest_fuzz_targets"]

_T_MS = 1_700_000_000_000
# format name -> (the rule, a topic it reads, valid messages to start from)
_CASES: dict[str, tuple[dict[str, Any], str, list[bytes]]] = {
    "ingest-json": (
        {"topic": "f/{line}/{machine}", "format": "json", "asset": {"area": "a"},
         "timestamp": {"path": "ts", "unit": "ms"}},
        "f/l/m",
        [orjson.dumps({"ts": _T_MS, "temp": 21.5, "run": True, "s": {"rpm": 1200}, "r": "A"})],
    ),
    "ingest-records": (
        {"topic": "k/{line}/{machine}", "format": "json", "asset": {"area": "a"}, "records": {}},
        "k/l/m",
        [orjson.dumps({"values": [{"id": "T1", "v": 1.5, "q": True, "t": _T_MS},
                                  {"id": "T2", "v": "x", "q": False, "t": _T_MS}]})],
    ),
    "ingest-value": (
        {"topic": "p/{area}/{line}/{machine}/{metric}", "format": "value"},
        "p/a/l/m/temp",
        [b"21.5", b"true", b"running", b'"quoted"'],
    ),
    "ingest-influx": (
        {"topic": "t/{machine}", "format": "influx", "asset": {"area": "a", "line": "l"}},
        "t/m",
        [b"cpu,host=a idle=97.5,n=3i,ok=true,s=\"x\" 1700000000000000000\nmem used=1 1"],
    ),
}  # fmt: skip


def _decoder(rule: dict[str, Any]) -> IngestDecoder:
    site = parse_site(orjson.dumps({
        "site": {"id": "fuzz"}, "ingest": [rule],
        "areas": [{"id": "a", "lines": [{"id": "l", "ideal_cycle_time_s": 1,
                                         "machines": [{"id": "m"}]}]}],
    }).decode()).config  # fmt: skip
    return IngestDecoder(
        site.ingest[0], "fuzz", site="fuzz", encoder=LineEncoder(), max_payload_bytes=65_536,
        dead_letter_max_bytes=4096,
    )  # fmt: skip


def _mutated_json(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    def dump(tree: Any, fallback: bytes) -> bytes:
        try:
            return orjson.dumps(tree)
        except orjson.JSONEncodeError:
            return fallback

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        seed = draw(st.sampled_from(seeds))
        text_keys = st.sampled_from(["ts", "values", "id", "v", "q", "t"]) | st.text(max_size=8)
        return dump(draw(mutated_trees(orjson.loads(seed), arbitrary_json, text_keys)), seed)

    return build()


def _inputs(seeds: list[bytes], json_seeds: bool) -> st.SearchStrategy[bytes]:
    kinds = [mutated_bytes(st.sampled_from(seeds)), arbitrary_json.map(orjson.dumps),
             st.binary(max_size=300)]  # fmt: skip
    if json_seeds:
        kinds.append(_mutated_json(seeds))
    return st.one_of(kinds)


def _check(decoder: IngestDecoder, topic: str, payload: bytes) -> str:
    try:
        result = decoder(topic, payload)
    except Exception as exc:  # noqa: BLE001 - the contract under test: nothing escapes
        raise UnclearError(f"{type(exc).__name__} escaped the decoder: {exc}") from None
    if not result.lines and not result.dead_letters:
        raise UnclearError("a message became nothing: no samples, no dead letter")
    for letter in result.dead_letters:
        check_message(orjson.loads(letter.payload)["reason"], "dead letter")
    if result.lines:
        parsed = parse_body("\n".join(result.lines))
        if parsed.refused:
            raise UnclearError(f"a line the decoder wrote does not parse: {parsed.refused[0]}")
    return "dead letter" if result.dead_letters and not result.lines else ACCEPTED


def ingest_fuzz_targets() -> list[FuzzTarget]:
    return [_target(name, *case) for name, case in _CASES.items()]


def _target(name: str, rule: dict[str, Any], topic: str, seeds: list[bytes]) -> FuzzTarget:
    decoder = _decoder(rule)

    def check(payload: bytes) -> str:
        return _check(decoder, topic, payload)

    about = f"the {rule['format']} ingest decoder on mutated messages, any JSON, any bytes"
    return FuzzTarget(name, about, _inputs(seeds, json_seeds=rule["format"] == "json"), check)
