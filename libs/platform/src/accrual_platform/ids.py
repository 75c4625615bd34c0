"""Row ids: time-ordered (version 7) UUIDs, without a system call per id.

Version 7 (RFC 9562): the first 48 bits are the Unix time in milliseconds, the rest 74
random bits (beside the version and variant). New rows' ids then sort after older ones, so
each primary-key index takes its inserts at its right-hand edge instead of on a random page:
fewer pages touched, fewer of them written whole to the WAL after a checkpoint
(bench/README.md, "Row ids"). The ids are opaque to partners; what a version 7 id tells
beyond a random one is when it was made, which the rows carry anyway (received_at,
created_at).

``uuid.uuid4()`` reads 16 bytes from ``os.urandom`` each time, and the read releases the
GIL: in a process whose other threads are busy, each id then waits for the GIL again,
and the rules worker makes an id per ledger entry. This module reads the kernel's random
bytes 4 KiB at a time, into a buffer per thread. The buffers are dropped in a forked child,
so two processes never hand out the same bytes.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

from accrual_platform import errors

_CHUNK = 4096


class _Buffer(threading.local):
    """Each thread's own random bytes: no lock to take per id (under load the worker's eight
    threads queued on a shared one, 13% of the rules worker's samples in a drain profile)."""

    def __init__(self) -> None:
        self.data = b""
        self.offset = 0
        self.ms = -1  # the millisecond of ``prefix``, the text every id made in it starts with
        self.prefix = ""


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


_VARIANT = "89ab"  # the variant bits 10 and two random bits, as the digit they make


def new_id() -> str:
    """A new version 7 UUID as text (the form every table here stores)."""
    # The canonical text spelt out (a third of the time of str(uuid.UUID(...))): 12 hex
    # digits of milliseconds (formatted once per millisecond and thread) and the version
    # digit 7, then 3 random digits, the variant digit, 3 and 12 random digits.
    ms = time.time_ns() // 1_000_000
    buf = _local
    if ms != buf.ms:
        t = f"{ms:012x}"
        buf.ms, buf.prefix = ms, f"{t[:8]}-{t[8:]}-7"
    x = _random16().hex()
    return f"{buf.prefix}{x[:3]}-{_VARIANT[int(x[3], 16) & 3]}{x[4:7]}-{x[7:19]}"


def new_request_id() -> str:
    """``req_`` and 128 random bits in hex: a request id for logs and answers (one per request,
    so from the same buffer rather than a system call each)."""
    return f"req_{_random16().hex()}"


def canonical_uuid(value: str) -> str | None:
    """The lower-case hyphenated spelling of a UUID, or None when ``value`` is not one."""
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError):
        return None


def require_uuid(value: str, field: str) -> str:
    """``value`` as a canonical UUID, or a 400 naming ``field``: every id a caller sends
    is checked here, so that a malformed one never reaches a query."""
    if not value:
        raise errors.InvalidArgument.field(field, "is required (a UUID)")
    canonical = canonical_uuid(value)
    if canonical is None:
        raise errors.InvalidArgument.field(field, "must be a UUID")
    return canonical
