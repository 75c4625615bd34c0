"""Random (version 4) UUIDs for row ids, without a system call per id.

``uuid.uuid4()`` reads 16 bytes from ``os.urandom`` each time, and the read releases the
GIL: in a process whose other threads are busy, each id then waits for the GIL again
(about 20x slower per id measured with one busy thread), and the rules worker makes an id
per ledger entry. This module reads the kernel's random bytes 4 KiB at a time; ids are
still 122 random bits from the same source. The buffer is dropped in a forked child, so two
processes never hand out the same bytes.
"""

from __future__ import annotations

import os
import threading
import uuid

_CHUNK = 4096
_lock = threading.Lock()
_buffer = b""
_offset = 0


def _reset() -> None:
    global _buffer, _offset, _lock
    _buffer, _offset, _lock = b"", 0, threading.Lock()


os.register_at_fork(after_in_child=_reset)


def new_id() -> str:
    """A new random UUID as text (the form every table here stores)."""
    global _buffer, _offset
    with _lock:
        if _offset + 16 > len(_buffer):
            _buffer, _offset = os.urandom(_CHUNK), 0
        raw = _buffer[_offset:_offset + 16]
        _offset += 16
    return str(uuid.UUID(bytes=raw, version=4))
