"""Give memory back to the operating system after a burst (glibc's allocator).

A gateway that took a burst of large messages frees them, but glibc keeps freed memory for
reuse: its threshold for serving a large block from its own mapping rises to the largest block
freed so far, so after a burst of 1 MB payloads every later 1 MB block comes from the heap, where
freed space is seldom returned. Resident memory then stays at the burst's peak although nothing
uses it. Two glibc calls undo that: a fixed ``M_MMAP_THRESHOLD`` (large blocks always get their
own mapping, unmapped when freed) and ``malloc_trim`` after a burst (the heaps' free pages go
back). Elsewhere than glibc both do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

__all__ = ["map_large_blocks", "release_free_memory"]

log = logging.getLogger(__name__)

_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
LARGE_BLOCK_BYTES = 256 * 1024


def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


_LIBC = _glibc()


def map_large_blocks(threshold_bytes: int = LARGE_BLOCK_BYTES) -> bool:
    """Serve blocks from ``threshold_bytes`` up from their own mappings, always; True if set."""
    if _LIBC is None:
        return False
    return bool(_LIBC.mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(threshold_bytes)))


def release_free_memory() -> bool:
    """Return the heaps' free pages to the operating system; True if any were."""
    if _LIBC is None:
        return False
    return bool(_LIBC.malloc_trim(ctypes.c_size_t(0)))
