"""Row ids: valid version-7 UUIDs, unique, time-ordered, also across a fork."""

from __future__ import annotations

import os
import re
import threading
import time
import uuid

from accrual_platform.ids import new_id, new_request_id


def test_ids_are_unique_version_7_uuids_across_threads() -> None:
    out: list[list[str]] = [[] for _ in range(4)]
    before = time.time_ns() // 1_000_000

    def work(i: int) -> None:
        out[i].extend(new_id() for _ in range(5000))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = time.time_ns() // 1_000_000
    ids = [x for chunk in out for x in chunk]
    assert len(set(ids)) == 20_000
    parsed = [uuid.UUID(x) for x in ids]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 and str(u) == x for u, x in zip(parsed, ids, strict=True))
    # the first 48 bits are the time they were made, in Unix milliseconds
    assert all(before <= u.int >> 80 <= after for u in parsed)
    # the random bits are all used: every hex digit after the time but the version and
    # variant digits takes all values, and the variant digit is 8, 9, a or b
    assert all(len({x.replace("-", "")[i] for x in ids}) == 16 for i in range(13, 32) if i != 16)
    assert {x[19] for x in ids} == set("89ab")


def test_later_ids_sort_after_earlier_ones() -> None:
    earlier = [new_id() for _ in range(100)]
    time.sleep(0.002)
    later = [new_id() for _ in range(100)]
    assert max(earlier) < min(later)


def test_a_forked_child_does_not_repeat_the_parents_ids() -> None:
    new_id()  # the parent now holds a buffer of random bytes
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read)
        os.write(write, ",".join(new_id() for _ in range(10)).encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 10_000).decode().split(",")
    os.waitpid(pid, 0)
    parent = [new_id() for _ in range(10)]
    assert len(child) == 10 and not set(child) & set(parent)


def test_request_ids_are_random_hex_and_unique() -> None:
    got = [new_request_id() for _ in range(5000)]
    assert len(set(got)) == 5000
    assert all(re.fullmatch(r"req_[0-9a-f]{32}", x) for x in got)
