"""Configuration: every setting of the suite, read from the environment here and only here.

A process calls :meth:`Settings.from_env` once, at start, and passes the object down; nothing
else reads the environment. Each setting is declared once below, with its variable and its
default (and, where the embedded suite differs, its embedded default), so the README's
configuration table can be checked against :data:`VARIABLES`.

Per-service processes fail fast when a peer address they need is missing, so a mistyped
deployment stops at start-up instead of failing on the first request.
"""

from __future__ import annotations

import base64
import dataclasses
import math
import os
import pathlib
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from accrual_platform import files
from accrual_platform.ratelimit import RateLimitConfig

PEERS = {
    "ingest": "INGEST_ADDR",
    "identity": "IDENTITY_ADDR",
    "rules": "RULES_ADDR",
    "notify": "NOTIFY_ADDR",
}

#: Settings read from more than one variable, or made from files in embedded mode; the
#: others carry their variable on their field (:func:`_variable`).
RATE_LIMIT_VARIABLES = ("RATE_LIMIT_PER_SECOND", "RATE_LIMIT_PER_MINUTE", "RATE_LIMIT_BURST")
REQUIRED_VARIABLES = ("DATABASE_URL", "BROKER_URL", "INTERNAL_TOKEN")


class ConfigError(RuntimeError):
    """A required setting is missing or malformed."""


def _number(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number: {raw!r}") from None
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number: {raw!r}")
    return value


def _integer(name: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number: {raw!r}") from None


def _positive(name: str, raw: str) -> float:
    value = _number(name, raw)
    if not value > 0:
        raise ConfigError(f"{name} must be above 0: {raw!r}")
    return value


def _positive_integer(name: str, raw: str) -> int:
    return int(_positive(name, raw))


def _flag(_: str, raw: str) -> bool:
    return raw.strip().lower() in ("1", "true", "yes")


def _text(_: str, raw: str) -> str:
    return raw


def _optional_text(_: str, raw: str) -> str | None:
    return raw or None


def _optional_integer(name: str, raw: str) -> int | None:
    return _integer(name, raw) if raw else None


def _path(_: str, raw: str) -> pathlib.Path:
    return pathlib.Path(raw)


def _optional_path(_: str, raw: str) -> pathlib.Path | None:
    return pathlib.Path(raw) if raw else None


def _retry_schedule(name: str, raw: str) -> tuple[float, ...]:
    try:
        values = tuple(float(x) for x in raw.split(",") if x.strip())
    except ValueError as exc:
        raise ConfigError(f"{name} must be comma-separated seconds: {raw!r}") from exc
    if not values:
        raise ConfigError(f"{name} is empty")
    return values


def _secrets_keys(_: str, raw: str) -> tuple[str, ...]:
    return tuple(k.strip() for k in raw.split(",") if k.strip())


_NO_EMBEDDED_DEFAULT: Any = object()
_VAR_DIR = pathlib.Path("var")


def _variable(name: str, default: Any, parse: Callable[[str, str], Any], *,
              embedded: Any = _NO_EMBEDDED_DEFAULT) -> Any:
    """A field read from the environment variable ``name`` by ``parse``; ``default`` when
    the variable is unset (``embedded`` instead, when given, in the embedded suite)."""
    return field(default=default, metadata=_metadata(name, parse, embedded))


def _metadata(name: str, parse: Callable[[str, str], Any], embedded: Any = _NO_EMBEDDED_DEFAULT,
              ) -> dict[str, Any]:
    return {"env": name, "parse": parse, "embedded": embedded}


def _rate_limit(env: Mapping[str, str]) -> RateLimitConfig | None:
    """RATE_LIMIT_PER_SECOND or _PER_MINUTE and RATE_LIMIT_BURST; None when turned off."""
    per_second, per_minute, burst_name = RATE_LIMIT_VARIABLES
    if env.get(per_second):
        rate = _number(per_second, env[per_second])
    elif env.get(per_minute):
        rate = _number(per_minute, env[per_minute]) / 60.0
    else:
        rate = RateLimitConfig.DEFAULT_PER_SECOND
    burst = _integer(burst_name, env[burst_name]) if env.get(burst_name) else None
    try:
        return RateLimitConfig.of(rate, burst)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def embedded_secrets_key(var_dir: pathlib.Path) -> str:
    """The embedded suite's key for secrets at rest, made once into var/, readable by its
    owner only (created with mode 0600, so it is never readable by others even briefly)."""
    path = var_dir / "secrets_key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()  # a Fernet key
    with os.fdopen(fd, "w") as f:
        f.write(key)
    return key


def _embedded_token(var_dir: pathlib.Path) -> str:
    """The embedded suite's internal token, made once into var/ so restarts keep it."""
    token_file = var_dir / "internal_token"
    if token_file.exists():
        return token_file.read_text().strip()
    token = secrets.token_urlsafe(32)
    files.write_private(token_file, token)
    return token


@dataclass(frozen=True)
class Settings:
    database_url: str
    broker_url: str
    redis_url: str | None = _variable("REDIS_URL", None, _optional_text)
    internal_token: str = ""
    peers: dict[str, str] = field(default_factory=dict)
    log_format: str = _variable("LOG_FORMAT", "json", _text, embedded="console")
    log_level: str = _variable("LOG_LEVEL", "INFO", _text)
    grpc_host: str = _variable("GRPC_HOST", "127.0.0.1", _text)
    grpc_port: int = _variable("GRPC_PORT", 50051, _integer)
    gateway_host: str = _variable("GATEWAY_HOST", "127.0.0.1", _text)
    gateway_port: int = _variable("GATEWAY_PORT", 8080, _integer)
    #: where the embedded suite keeps its SQLite files, token and keys
    var_dir: pathlib.Path = field(  # a path is not immutable to linters
        default=_VAR_DIR, metadata=_metadata("ACCRUAL_VAR_DIR", _path))
    #: the per-API-key token bucket; None turns rate limiting off (RATE_LIMIT_*)
    rate_limit: RateLimitConfig | None = RateLimitConfig.DEFAULT
    #: Dramatiq threads per worker process; None: 8 for a worker that delivers webhooks
    #: (waiting on partners' endpoints), 2 for the ingest worker alone (outcomes), 4 for the
    #: others (see hosting.worker_threads).
    worker_threads: int | None = _variable("WORKER_THREADS", None, _optional_integer)
    webhook_retry_schedule: tuple[float, ...] = _variable(
        "WEBHOOK_RETRY_SCHEDULE", (0, 5, 300, 1800, 7200, 18000, 36000, 36000), _retry_schedule)
    webhook_timeout_seconds: float = _variable("WEBHOOK_TIMEOUT_SECONDS", 15.0, _number)
    #: webhooks may go to loopback, private and reserved addresses: on in the embedded demo,
    #: whose receivers run on the same machine
    webhook_allow_private: bool = _variable("WEBHOOK_ALLOW_PRIVATE", False, _flag, embedded=True)
    #: webhooks may use plain http; None: as webhook_allow_private (see webhook_http_allowed)
    webhook_allow_http: bool | None = _variable("WEBHOOK_ALLOW_HTTP", None, _flag)
    #: Fernet keys that encrypt webhook signing secrets at rest (SECRETS_KEY, comma-separated:
    #: the first encrypts, every one decrypts, so a key can be rotated in); notify refuses
    #: to start without one
    secrets_keys: tuple[str, ...] = _variable("SECRETS_KEY", (), _secrets_keys)
    #: how long a key lookup is cached: only a fallback, since revocations evict at once
    api_key_cache_seconds: float = _variable("API_KEY_CACHE_SECONDS", 5.0, _number)
    #: how long a rotated-out webhook secret keeps signing alongside the new one
    webhook_secret_overlap_seconds: float = _variable(
        "WEBHOOK_SECRET_OVERLAP_SECONDS", 24 * 3600.0, _number)
    #: an endpoint whose every attempt failed for this long since its last success is disabled
    webhook_disable_after_seconds: float = _variable(
        "WEBHOOK_DISABLE_AFTER_SECONDS", 5 * 24 * 3600.0, _number)
    #: attempts one endpoint may have running at once, so a slow receiver holds few threads
    webhook_endpoint_max_in_flight: int = _variable("WEBHOOK_ENDPOINT_MAX_IN_FLIGHT", 4, _integer)
    #: Ingest announces again events unfinished this long after their last announcement.
    stale_event_after_seconds: float = _variable("STALE_EVENT_AFTER_SECONDS", 120.0, _number)
    stale_event_sweep_seconds: float = _variable("STALE_EVENT_SWEEP_SECONDS", 30.0, _number)
    #: SubmitEvent calls (``Prefer: wait=N``) that may wait for their outcome at once per
    #: ingest process; each holds a gRPC server thread (added to the server's pool), and
    #: beyond this number a call is answered at once without waiting.
    submit_wait_max_calls: int = _variable("SUBMIT_WAIT_MAX_CALLS", 32, _integer)
    #: Ingest announces again every unfinished event at start: the embedded suite's
    #: in-process broker lost the messages that carried them when its process ended.
    announce_unfinished_at_start: bool = False
    #: After a commit wakes an outbox relay, it waits this long for more rows, so a stream
    #: of single-event accepts reaches the rules workers as fewer, larger messages; a longer
    #: wait costs the accept-to-completed p99 (SPEC 9: <= 1 s) on a slow machine
    #: (bench/README.md, "Outbox linger").
    outbox_linger_seconds: float = _variable("OUTBOX_LINGER_SECONDS", 0.1, _number)
    #: Rule expressions run in sandbox processes: CPU per expression, memory per process
    #: beyond its own start-up size, how many processes, and after how many breaches of
    #: either limit a rule is suspended.
    rule_eval_deadline_ms: float = _variable("RULE_EVAL_DEADLINE_MS", 50.0, _positive)
    rule_eval_memory_mb: int = _variable("RULE_EVAL_MEMORY_MB", 256, _positive_integer)
    rule_eval_processes: int = _variable("RULE_EVAL_PROCESSES", 2, _positive_integer)
    rule_suspend_after_breaches: int = _variable("RULE_SUSPEND_AFTER_BREACHES", 3, _positive_integer)
    #: how often the scheduled-events process looks for birthdays, anniversaries, inactivity
    scheduler_interval_seconds: float = _variable("SCHEDULER_INTERVAL_SECONDS", 60.0, _positive)
    #: the operator console's build the gateway serves at /console; None: the source
    #: checkout's console/dist (``make console`` builds it)
    console_dir: pathlib.Path | None = field(  # a path is not immutable to linters
        default=None, metadata=_metadata("CONSOLE_DIR", _optional_path))
    #: the key `accrual demo` calls the gateway with (default: the embedded admin key)
    api_key: str = _variable("ACCRUAL_API_KEY", "", _text)

    @property
    def webhook_http_allowed(self) -> bool:
        """Whether webhook URLs may be plain http (WEBHOOK_ALLOW_HTTP, else as private)."""
        if self.webhook_allow_http is None:
            return self.webhook_allow_private
        return self.webhook_allow_http

    def peer(self, name: str) -> str:
        """Address of a peer service; raises ConfigError naming the variable when unset."""
        try:
            return self.peers[name]
        except KeyError:
            raise ConfigError(f"{PEERS[name]} is not set (address of the {name} service)") from None

    @classmethod
    def read(cls, env: Mapping[str, str] | None = None, *, embedded: bool = False) -> Settings:
        """Every setting the environment gives, with the defaults for the rest; nothing is
        required and nothing written (a command that only talks to a running suite)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            name = f.metadata.get("env")
            if name is None:
                continue
            if name in env:
                values[f.name] = f.metadata["parse"](name, env[name])
            elif embedded and f.metadata["embedded"] is not _NO_EMBEDDED_DEFAULT:
                values[f.name] = f.metadata["embedded"]
        return cls(database_url=env.get("DATABASE_URL", ""), broker_url=env.get("BROKER_URL", ""),
                   internal_token=env.get("INTERNAL_TOKEN", ""),
                   peers={name: env[var] for name, var in PEERS.items() if env.get(var)},
                   rate_limit=_rate_limit(env), **values)

    @classmethod
    def from_env(cls, *, require_peers: tuple[str, ...] = (), embedded: bool = False,
                 env: Mapping[str, str] | None = None) -> Settings:
        """The settings of a process. A deployment must give DATABASE_URL, BROKER_URL and
        INTERNAL_TOKEN; the embedded suite defaults them (SQLite and a token under var/, the
        in-process broker) and makes its secrets key there."""
        settings = cls.read(env, embedded=embedded)
        if embedded:
            var = settings.var_dir
            files.private_dir(var)
            settings = dataclasses.replace(
                settings,
                database_url=settings.database_url or f"sqlite:///{var}/{{schema}}.db",
                broker_url=settings.broker_url or "stub://",
                internal_token=settings.internal_token or _embedded_token(var),
                secrets_keys=settings.secrets_keys or (embedded_secrets_key(var),))
        else:
            missing = [v for v, value in zip(REQUIRED_VARIABLES, (
                settings.database_url, settings.broker_url, settings.internal_token), strict=True)
                if not value]
            if missing:
                raise ConfigError(f"missing environment variables: {', '.join(missing)}")
        for name in require_peers:
            settings.peer(name)
        return settings


#: Every environment variable the suite reads (the README's configuration table lists them).
VARIABLES = frozenset({
    *REQUIRED_VARIABLES, *PEERS.values(), *RATE_LIMIT_VARIABLES,
    *(f.metadata["env"] for f in dataclasses.fields(Settings) if "env" in f.metadata)})
