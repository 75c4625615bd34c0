"""Dramatiq broker selection and proto messages on queues.

Queue payloads are proto messages in their binary wire form, base64 text inside Dramatiq's
JSON envelope (:func:`encode`). Consumers decode with :func:`decode`, which also accepts the
proto-JSON dicts earlier versions queued, so messages already in queues or outboxes during
an upgrade still work. Producers enqueue by queue and actor name, so a service can hand work
to another service's worker without importing it.

A payload that cannot be read, whatever the way, is :class:`MalformedMessage`; actors declared
with :func:`declare_actor` dead-letter such a message at once instead of retrying it, and each
message's log lines carry its id, actor and service (:class:`LogContext`).
"""

from __future__ import annotations

import base64
import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import dramatiq
import orjson
import structlog
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import q_name
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

M = TypeVar("M", bound=Message)

RULES_QUEUE = "rules"
INGEST_QUEUE = "ingest"
NOTIFY_QUEUE = "notify"

log = structlog.get_logger("accrual.queue")


class MalformedMessage(ValueError):
    """A queue message whose payload cannot be read as the message its actor takes: not
    base64, not the message's wire form, proto-JSON that does not parse, or arguments that do
    not fit the actor. Redelivering it can never succeed."""


class LogContext(dramatiq.Middleware):
    """Gives each message's log lines a context of their own: the context left by the
    thread's previous message is cleared, then the message id, the actor and the service
    (each service consumes the queue of its own name) are bound; actors add tenant and event."""

    def before_process_message(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(service=q_name(message.queue_name),
                                               message_id=message.message_id,
                                               actor=message.actor_name)

    def after_process_message(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy, *,
                              result: Any | None = None, exception: BaseException | None = None) -> None:
        # the worker thread's lines between messages belong to no message
        structlog.contextvars.clear_contextvars()

    def after_skip_message(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        structlog.contextvars.clear_contextvars()


def with_log_context(broker: dramatiq.Broker) -> dramatiq.Broker:
    """``broker`` with :class:`LogContext` (added once)."""
    if not any(isinstance(m, LogContext) for m in broker.middleware):
        broker.add_middleware(LogContext())
    return broker


class OrjsonEncoder(dramatiq.Encoder):
    """Dramatiq's JSON envelope written and read by orjson: the same JSON, without the
    stdlib encoder's Python layers (2% of the rules worker's time in a drain profile)."""

    def encode(self, data: dict[str, Any]) -> bytes:
        return orjson.dumps(data)

    def decode(self, data: bytes) -> dict[str, Any]:
        try:
            decoded: dict[str, Any] = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise dramatiq.DecodeError("failed to decode message", data, exc) from None  # type: ignore[no-untyped-call]
        return decoded


def make_broker(url: str) -> dramatiq.Broker:
    """StubBroker for ``stub://``, RabbitMQ for ``amqp://``, Redis for ``redis://``; sets
    Dramatiq's (process-wide) message encoder to :class:`OrjsonEncoder`."""
    dramatiq.set_encoder(OrjsonEncoder())
    broker: dramatiq.Broker
    if url.startswith("stub"):
        broker = StubBroker()
        broker.emit_after("process_boot")
    elif url.startswith(("amqp://", "amqps://")):
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        # Publisher confirms: an outbox row is deleted only once the broker has the message.
        broker = RabbitmqBroker(url=url, confirm_delivery=True)
    elif url.startswith(("redis://", "rediss://")):
        from dramatiq.brokers.redis import RedisBroker

        # dramatiq leaves RedisBroker's constructor unannotated; this is the type it has
        redis_broker: Callable[..., dramatiq.Broker] = RedisBroker
        broker = redis_broker(url=url)
    else:
        raise ValueError(f"unsupported BROKER_URL scheme: {url!r}")
    return with_log_context(broker)


def to_payload(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def from_payload(payload: dict[str, Any], cls: type[M]) -> M:
    return json_format.ParseDict(payload, cls(), ignore_unknown_fields=True)


def encode(message: Message) -> str:
    """The queue form of ``message``: its binary encoding as base64 text. The C protobuf
    runtime does this in about a microsecond, where proto-JSON costs tens of microseconds
    of pure Python per message on every hop of the pipeline."""
    return base64.b64encode(message.SerializeToString()).decode("ascii")


def decode(payload: str | dict[str, Any], cls: type[M]) -> M:
    """A message from its queue form (:func:`encode`) or from proto-JSON (earlier versions);
    :class:`MalformedMessage` if ``payload`` is neither."""
    try:
        if isinstance(payload, dict):
            return from_payload(payload, cls)
        message = cls()
        # binascii.Error (a ValueError) for bad base64, ValueError for non-ASCII text,
        # TypeError for a payload that is not text at all
        message.ParseFromString(base64.b64decode(payload, validate=True))
        return message
    except (json_format.ParseError, DecodeError, ValueError, TypeError) as exc:
        raise MalformedMessage(f"not a {cls.DESCRIPTOR.full_name}: {exc}") from exc


def enqueue(broker: dramatiq.Broker, queue: str, actor_name: str, message: Message,
            *, delay_ms: int | None = None) -> None:
    if queue not in broker.get_declared_queues():
        broker.declare_queue(queue)
    options: dict[str, Any] = {}
    msg: dramatiq.Message[Any] = dramatiq.Message(queue_name=queue, actor_name=actor_name,
                           args=(encode(message),), kwargs={}, options=options)
    broker.enqueue(msg, delay=delay_ms)


def declare_actor(broker: dramatiq.Broker, fn: Callable[..., Any], *, queue: str, name: str,
                  **options: Any) -> dramatiq.Actor[Any, Any]:
    """Register ``fn`` as actor ``name`` on ``queue`` of this broker (no global broker).

    Retries: Dramatiq's defaults back off exponentially from 15 s towards 7 days, so one
    deadlock or a database restart would park an event for hours. Our consumers are
    idempotent, so they retry soon and often (0.25 s doubling to 30 s, for about 30 minutes);
    beyond that ingest's stale-event sweep announces unfinished events again.

    A :class:`MalformedMessage` is logged as an error and the message dead-lettered at once
    (Dramatiq's ``throws``): a message that cannot be read would fail all 60 times."""
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            try:
                signature.bind(*args, **kwargs)
            except TypeError as exc:
                raise MalformedMessage(f"arguments do not fit actor {name}: {exc}") from None
            return fn(*args, **kwargs)
        except MalformedMessage as exc:
            log.error("message_malformed", error=str(exc))
            raise

    throws = options.pop("throws", ())
    options = {"min_backoff": 250, "max_backoff": 30_000, "max_retries": 60, **options,
               "throws": (MalformedMessage, *(throws if isinstance(throws, tuple) else (throws,)))}
    return dramatiq.Actor(run, broker=with_log_context(broker), actor_name=name, queue_name=queue,
                          priority=0, options=options)
