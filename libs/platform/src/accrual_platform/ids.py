"""Random (version 4) UUIDs for row ids, without a system call per id.

``uuid.uuid4()`` reads 16 bytes from ``os.urandom`` each time, and the read releases the
GIL: in a process whose other threads are busy, each id then waits for the GIL again
(about 20x slower per id measured with one busy thread), and the rules worker makes an id
per ledger entry. This module reads the kernel's random bytes 4 KiB at a time, into a
buffer per thread; ids are still 122 random bits from the same source. The buffers are
dropped in a forked child, so two processes never hand out the same bytes.
"""

from __future__ import annotations

import os
import threading

_CHUNK = 4096


class _Buffer(threading.local):
    """Each thread's own random bytes: no lock to take per id (under load the worker's eight
    threads queued on a shared one, 13% of the rules worker's samples in a drain profile)."""

    def __init__(self) -> None:
        self.data = b""
        self.offset = 0


_local = _Buffer()


def _reset() -> None:
    global _local
    _local = _Buffer()


os.register_at_fork(after_in_child=_reset)


def _random16() -> bytes:
    buf = _local
    offset = buf.offset
    if offset + 16 > len(buf.data):
        buf.data, offset = os.urandom(_CHUNK), 0
    buf.offset = offset + 16
    return buf.data[offset:offset + 16]


def new_id() -> str:
    """A new random UUID as text (the form every table here stores)."""
    # str(uuid.UUID(bytes=..., version=4)) spelt out: the same text in half the time
    x = _random16().hex()
    variant = int(x[16:18], 16) & 0x3F | 0x80
    return f"{x[:8]}-{x[8:12]}-4{x[13:16]}-{variant:02x}{x[18:20]}-{x[20:]}"


def new_request_id() -> str:
    """``req_`` and 128 random bits in hex: a request id for logs and answers (one per request,
    so from the same buffer rather than a system call each)."""
    return f"req_{_random16().hex()}"
