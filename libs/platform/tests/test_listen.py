"""Payloads of ``pg_notify`` kept under PostgreSQL's size limit."""

from __future__ import annotations

from accrual_platform import listen


def test_joined_fills_payloads_up_to_the_limit() -> None:
    assert listen.joined([]) == []
    assert listen.joined(["a"]) == ["a"]
    items = ["x" * 99] * 200  # 100 bytes each with its separator
    payloads = listen.joined(items)
    assert all(len(p.encode()) <= listen.MAX_PAYLOAD_BYTES for p in payloads)
    assert [len(p.split(",")) for p in payloads] == [80, 80, 40]
    assert ",".join(payloads) == ",".join(items)


def test_listener_does_nothing_on_sqlite() -> None:
    listener = listen.Listener("sqlite:///x.db", {"channel": lambda payload: None}).start()
    assert not listener.enabled and not listener.listening.is_set()
    listener.stop()
