"""One structlog configuration for every process.

stdlib loggers (grpc, SQLAlchemy, Dramatiq, uvicorn) go through structlog's
ProcessorFormatter so every line has the same shape: JSON in production, console in a terminal.
Context (service, request_id, tenant_id, event_id, message_id) is bound with contextvars per
RPC (:mod:`accrual_platform.grpc_server`) and per message (:mod:`accrual_platform.queue`);
lines outside both (startup, relays, sweepers) get the process's service name.

Keys, tokens and secrets never reach a line (SPEC 8): tracebacks are rendered as plain text in
both formats (the console renderer's rich tracebacks would show every frame's local variables,
an API key among them), and ``Redactor`` runs last before rendering, on structlog's records and
foreign ones alike, masking values by their key's name and by their shape.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
from collections.abc import Iterable, Mapping
from typing import Any

import structlog

from accrual_platform.auth import KEY_PREFIX

REDACTED = "[REDACTED]"

#: Field, header and metadata names whose values are secrets, compared lower-cased with
#: "-" read as "_" (x-api-key, Authorization, x-internal-token, webhook_secret, password...).
_SECRET_NAME = re.compile(
    r"(authorization|api_?key|secrets?|passwo?r?d|cookie|credentials?|(^|_)token)$")
#: Names that end like a secret's but hold none: page cursors are opaque, not credentials.
_NOT_SECRET_NAMES = frozenset({"page_token", "next_page_token"})

#: Secrets recognisable by their shape wherever they appear, a message or a traceback
#: included: API keys (``sk_`` + base64url), webhook signing secrets (``whsec_`` + base64)
#: and the credential of an Authorization header.
_SECRET_SHAPES = [
    (re.compile(r"(?<![A-Za-z0-9])" + re.escape(KEY_PREFIX) + r"[A-Za-z0-9_\-]{16,}"), REDACTED),
    (re.compile(r"(?<![A-Za-z0-9])whsec_[A-Za-z0-9+/=_\-]{16,}"), REDACTED),
    (re.compile(r"(?i:\b(bearer|basic))(\s+)[A-Za-z0-9._~+/=\-]+"), r"\1\2" + REDACTED),
]

#: Values rendered as they are; anything else is rendered through repr() and then redacted,
#: since an object's repr (an exception, a request) can hold a secret.
_PLAIN = (int, float, bool, type(None))


@functools.lru_cache(maxsize=4096)
def is_secret_name(name: str) -> bool:
    normal = name.lower().replace("-", "_")
    return normal not in _NOT_SECRET_NAMES and _SECRET_NAME.search(normal) is not None


class Redactor:
    """A structlog processor that masks secrets in an event dict.

    ``values`` are secrets known by value that have no recognisable shape, such as the
    internal token (random base64url): every occurrence of them in any string is masked.
    """

    def __init__(self, values: Iterable[str] = ()) -> None:
        literals = sorted({v for v in values if v and len(v) >= 8}, key=len, reverse=True)
        self._shapes = list(_SECRET_SHAPES)
        if literals:
            self._shapes.append((re.compile("|".join(re.escape(v) for v in literals)), REDACTED))
        # One search finds whether any shape occurs: most strings hold none, and then the
        # substitutions one by one would change nothing.
        self._any = re.compile("|".join(f"(?:{pattern.pattern})" for pattern, _ in self._shapes))

    def __call__(self, _logger: Any, _method: str, event_dict: Any) -> Any:
        return {k: REDACTED if isinstance(k, str) and is_secret_name(k) and v is not None
                else self.value(v) for k, v in event_dict.items()}

    def text(self, text: str) -> str:
        if self._any.search(text) is None:
            return text
        for pattern, replacement in self._shapes:
            text = pattern.sub(replacement, text)
        return text

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, _PLAIN):
            return value
        if isinstance(value, Mapping):
            return {k: REDACTED if isinstance(k, str) and is_secret_name(k) else self.value(v)
                    for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            # a (name, value) pair is a header or gRPC metadata entry
            if len(value) == 2 and isinstance(value[0], str) and is_secret_name(value[0]):
                items: list[Any] = [value[0], REDACTED]
            else:
                items = [self.value(v) for v in value]
            return tuple(items) if isinstance(value, tuple) else items
        return self.text(repr(value))


class DefaultService:
    """Names the process's service on lines whose context names none: contextvars are
    cleared per RPC and per message and start empty in every new thread, so a value bound
    once at startup would be lost."""

    def __init__(self, service: str) -> None:
        self.service = service

    def __call__(self, _logger: Any, _method: str, event_dict: Any) -> Any:
        event_dict.setdefault("service", self.service)
        return event_dict


def bind_subject(*, tenant_ids: Iterable[str] = (), event_ids: Iterable[str] = ()) -> None:
    """Bind ``tenant_id`` and ``event_id`` to the log context when the work in hand concerns
    exactly one of each (a batch of several binds none, rather than a misleading first)."""
    bound: dict[str, str] = {}
    for key, values in (("tenant_id", tenant_ids), ("event_id", event_ids)):
        distinct = set(values)
        if len(distinct) == 1:
            (value,) = distinct
            if value:
                bound[key] = value
    if bound:
        structlog.contextvars.bind_contextvars(**bound)


def configure_logging(service: str, *, fmt: str = "json", level: str = "INFO",
                      secrets: Iterable[str] = ()) -> None:
    """Configure structlog and stdlib logging; ``secrets`` are masked wherever they appear."""
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        DefaultService(service),
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        # Plain text tracebacks in every format: no frame's local variables, and text the
        # redactor can read.
        structlog.processors.format_exc_info,
    ]
    renderer: structlog.types.Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty(),
                                                 exception_formatter=structlog.dev.plain_traceback)
    structlog.configure(
        # A line below the level is dropped before the processors build it, not after.
        processors=[structlog.stdlib.filter_by_level, *shared,
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            Redactor(secrets),
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("sqlalchemy.engine", "pika", "urllib3", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
