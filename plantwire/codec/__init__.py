"""Payload codecs: the native JSON batch format (and, later, Sparkplug B)."""

from plantwire.codec.native import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    SCHEMA_VERSION,
    Decoded,
    RejectedSample,
    assemble_batch,
    decode_batch,
    encode_batch,
    encode_samples,
)

__all__ = [
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "SCHEMA_VERSION",
    "Decoded",
    "RejectedSample",
    "assemble_batch",
    "decode_batch",
    "encode_batch",
    "encode_samples",
]
