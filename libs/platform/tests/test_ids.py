"""Row ids: valid version-4 UUIDs, unique, also across a fork."""

from __future__ import annotations

import os
import re
import threading
import uuid

from accrual_platform.ids import new_id, new_request_id


def test_ids_are_unique_version_4_uuids_across_threads() -> None:
    out: list[list[str]] = [[] for _ in range(4)]

    def work(i: int) -> None:
        out[i].extend(new_id() for _ in range(5000))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [x for chunk in out for x in chunk]
    assert len(set(ids)) == 20_000
    parsed = [uuid.UUID(x) for x in ids]
    assert all(u.version == 4 and u.variant == uuid.RFC_4122 and str(u) == x for u, x in zip(parsed, ids, strict=True))
    # the random bits are all used: every hex digit but the version and variant takes all values
    assert all(len({x.replace("-", "")[i] for x in ids}) == 16 for i in range(32) if i not in (12, 16))
    assert {x[19] for x in ids} == set("89ab")


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
