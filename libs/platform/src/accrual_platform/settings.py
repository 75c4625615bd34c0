"""Configuration, read only from the environment.

Per-service processes fail fast when a peer address they need is missing, so a mistyped
deployment stops at start-up instead of failing on the first request.
"""

from __future__ import annotations

import base64
import os
import pathlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from accrual_platform import files

EMBEDDED_VAR_DIR = pathlib.Path(os.environ.get("ACCRUAL_VAR_DIR", "var"))

PEERS = {
    "ingest": "INGEST_ADDR",
    "identity": "IDENTITY_ADDR",
    "rules": "RULES_ADDR",
    "notify": "NOTIFY_ADDR",
}


class ConfigError(RuntimeError):
    """A required setting is missing or malformed."""


def _retry_schedule(raw: str) -> tuple[float, ...]:
    try:
        values = tuple(float(x) for x in raw.split(",") if x.strip())
    except ValueError as exc:
        raise ConfigError(f"WEBHOOK_RETRY_SCHEDULE must be comma-separated seconds: {raw!r}") from exc
    if not values:
        raise ConfigError("WEBHOOK_RETRY_SCHEDULE is empty")
    return values


def _positive(env: Mapping[str, str], name: str, default: str) -> float:
    raw = env.get(name, default)
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number: {raw!r}") from None
    if not value > 0:
        raise ConfigError(f"{name} must be above 0: {raw!r}")
    return value


def _secrets_keys(raw: str) -> tuple[str, ...]:
    return tuple(k.strip() for k in raw.split(",") if k.strip())


def embedded_secrets_key() -> str:
    """The embedded suite's key for secrets at rest, made once into var/, readable by its
    owner only (created with mode 0600, so it is never readable by others even briefly)."""
    path = EMBEDDED_VAR_DIR / "secrets_key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()  # a Fernet key
    with os.fdopen(fd, "w") as f:
        f.write(key)
    return key


@dataclass(frozen=True)
class Settings:
    database_url: str
    broker_url: str
    redis_url: str | None
    internal_token: str
    peers: dict[str, str] = field(default_factory=dict)
    log_format: str = "console"
    log_level: str = "INFO"
    grpc_host: str = "127.0.0.1"
    grpc_port: int = 50051
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8080
    #: Dramatiq threads per worker process; None: 8 for a worker that delivers webhooks
    #: (waiting on partners' endpoints), 2 for the ingest worker alone (outcomes), 4 for the
    #: others (see hosting.worker_threads).
    worker_threads: int | None = None
    webhook_retry_schedule: tuple[float, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
    webhook_timeout_seconds: float = 15.0
    webhook_allow_private: bool = False
    #: Fernet keys that encrypt webhook signing secrets at rest (SECRETS_KEY, comma-separated:
    #: the first encrypts, every one decrypts, so a key can be rotated in); notify refuses
    #: to start without one
    secrets_keys: tuple[str, ...] = ()
    #: how long a key lookup is cached: only a fallback, since revocations evict at once
    api_key_cache_seconds: float = 5.0
    #: how long a rotated-out webhook secret keeps signing alongside the new one
    webhook_secret_overlap_seconds: float = 24 * 3600.0
    #: an endpoint whose every attempt failed for this long since its last success is disabled
    webhook_disable_after_seconds: float = 5 * 24 * 3600.0
    #: attempts one endpoint may have running at once, so a slow receiver holds few threads
    webhook_endpoint_max_in_flight: int = 4
    #: Ingest announces again events unfinished this long after their last announcement.
    stale_event_after_seconds: float = 120.0
    stale_event_sweep_seconds: float = 30.0
    #: Ingest announces again every unfinished event at start: the embedded suite's
    #: in-process broker lost the messages that carried them when its process ended.
    announce_unfinished_at_start: bool = False
    #: After a commit wakes an outbox relay, it waits this long for more rows, so a stream
    #: of single-event accepts reaches the rules workers as fewer, larger messages; a longer
    #: wait costs the accept-to-completed p99 (SPEC 9: <= 1 s) on a slow machine
    #: (bench/README.md, "Outbox linger").
    outbox_linger_seconds: float = 0.1
    #: Rule expressions run in sandbox processes: CPU per expression, memory per process
    #: beyond its own start-up size, how many processes, and after how many breaches of
    #: either limit a rule is suspended.
    rule_eval_deadline_ms: float = 50.0
    rule_eval_memory_mb: int = 256
    rule_eval_processes: int = 2
    rule_suspend_after_breaches: int = 3

    def peer(self, name: str) -> str:
        """Address of a peer service; raises ConfigError naming the variable when unset."""
        try:
            return self.peers[name]
        except KeyError:
            raise ConfigError(f"{PEERS[name]} is not set (address of the {name} service)") from None

    @classmethod
    def from_env(cls, *, require_peers: tuple[str, ...] = (), embedded: bool = False) -> Settings:
        env = os.environ
        if embedded:
            files.private_dir(EMBEDDED_VAR_DIR)
            database_url = env.get("DATABASE_URL", f"sqlite:///{EMBEDDED_VAR_DIR}/{{schema}}.db")
            broker_url = env.get("BROKER_URL", "stub://")
            token_file = EMBEDDED_VAR_DIR / "internal_token"
            if "INTERNAL_TOKEN" in env:
                token = env["INTERNAL_TOKEN"]
            elif token_file.exists():
                token = token_file.read_text().strip()
            else:
                token = secrets.token_urlsafe(32)
                files.write_private(token_file, token)
        else:
            missing = [v for v in ("DATABASE_URL", "BROKER_URL", "INTERNAL_TOKEN") if not env.get(v)]
            if missing:
                raise ConfigError(f"missing environment variables: {', '.join(missing)}")
            database_url, broker_url, token = (
                env["DATABASE_URL"], env["BROKER_URL"], env["INTERNAL_TOKEN"])
        peers = {name: env[var] for name, var in PEERS.items() if env.get(var)}
        settings = cls(
            database_url=database_url,
            broker_url=broker_url,
            redis_url=env.get("REDIS_URL") or None,
            internal_token=token,
            peers=peers,
            log_format=env.get("LOG_FORMAT", "console" if embedded else "json"),
            log_level=env.get("LOG_LEVEL", "INFO"),
            grpc_host=env.get("GRPC_HOST", "127.0.0.1"),
            grpc_port=int(env.get("GRPC_PORT", "50051")),
            gateway_host=env.get("GATEWAY_HOST", "127.0.0.1"),
            gateway_port=int(env.get("GATEWAY_PORT", "8080")),
            worker_threads=int(env["WORKER_THREADS"]) if env.get("WORKER_THREADS") else None,
            webhook_retry_schedule=_retry_schedule(
                env.get("WEBHOOK_RETRY_SCHEDULE", "0,5,300,1800,7200,18000,36000,36000")),
            webhook_timeout_seconds=float(env.get("WEBHOOK_TIMEOUT_SECONDS", "15")),
            webhook_allow_private=env.get("WEBHOOK_ALLOW_PRIVATE", "0") in ("1", "true", "yes"),
            secrets_keys=_secrets_keys(env.get("SECRETS_KEY", ""))
            or ((embedded_secrets_key(),) if embedded else ()),
            api_key_cache_seconds=float(env.get("API_KEY_CACHE_SECONDS", "5")),
            webhook_secret_overlap_seconds=float(
                env.get("WEBHOOK_SECRET_OVERLAP_SECONDS", str(24 * 3600))),
            webhook_disable_after_seconds=float(
                env.get("WEBHOOK_DISABLE_AFTER_SECONDS", str(5 * 24 * 3600))),
            webhook_endpoint_max_in_flight=int(env.get("WEBHOOK_ENDPOINT_MAX_IN_FLIGHT", "4")),
            stale_event_after_seconds=float(env.get("STALE_EVENT_AFTER_SECONDS", "120")),
            stale_event_sweep_seconds=float(env.get("STALE_EVENT_SWEEP_SECONDS", "30")),
            outbox_linger_seconds=float(env.get("OUTBOX_LINGER_SECONDS", "0.1")),
            rule_eval_deadline_ms=_positive(env, "RULE_EVAL_DEADLINE_MS", "50"),
            rule_eval_memory_mb=int(_positive(env, "RULE_EVAL_MEMORY_MB", "256")),
            rule_eval_processes=int(_positive(env, "RULE_EVAL_PROCESSES", "2")),
            rule_suspend_after_breaches=int(_positive(env, "RULE_SUSPEND_AFTER_BREACHES", "3")),
        )
        for name in require_peers:
            settings.peer(name)
        return settings
