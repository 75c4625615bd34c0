"""Webhook facts as queue messages: one way to write a Notification and one way to read it.

Every service that announces facts (identity, rules, ingest) builds them here and the notify
worker reads them here. The data travel as JSON text (``data_json``), which orjson writes and
reads in C; a ``google.protobuf.Struct`` was built and walked value by value in Python, a
fifth of the producers' and a third of the notify worker's time per notification. Messages
queued before ``data_json`` existed still carry ``data`` and are read from it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import orjson
from accrual.messages.v1 import messages_pb2

from accrual_platform import structs


def notification(tenant_id: str, kind: str, fact_id: str, at: dt.datetime,
                 data: Mapping[str, Any]) -> messages_pb2.Notification:
    """A webhook fact; ``fact_id`` is derived from what happened, so a replay is the same fact."""
    payload = data if isinstance(data, dict) else dict(data)  # orjson writes dicts, not Mappings
    note = messages_pb2.Notification(tenant_id=tenant_id, type=kind, fact_id=fact_id,
                                      data_json=orjson.dumps(payload).decode())
    structs.set_timestamp(note.created_at, at)
    return note


def data_of(note: messages_pb2.Notification) -> dict[str, Any]:
    """The fact's data as plain Python; ValueError when it is not a JSON object."""
    if not note.data_json:
        return structs.to_dict(note.data)
    try:
        data = orjson.loads(note.data_json)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"data_json is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("data_json is not a JSON object")
    return data
