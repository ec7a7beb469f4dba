"""Payload codecs: the native JSON batch format (and, later, Sparkplug B)."""

from plantwire.codec.native import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    SCHEMA_VERSION,
    Decoded,
    RejectedSample,
    decode_batch,
    encode_batch,
)

__all__ = [
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "SCHEMA_VERSION",
    "Decoded",
    "RejectedSample",
    "decode_batch",
    "encode_batch",
]
