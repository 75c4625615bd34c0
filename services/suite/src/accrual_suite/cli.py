"""The ``accrual`` command: run the suite, serve one service, run workers, migrate, keys."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import gc
import sys
from collections.abc import Iterator

import structlog
from accrual_platform import auth, files, queue
from accrual_platform.db import Database
from accrual_platform.grpc_server import wait_for_termination
from accrual_platform.logging import configure_logging
from accrual_platform.settings import ConfigError, Settings
from accrual_platform.statistics import StatisticsKeeper

from accrual_suite import hosting

log = structlog.get_logger("accrual.suite")

#: Identity and ingest ask rules whether a program exists before their program routes.
PEERS_NEEDED = {"identity": ("rules",), "ingest": ("identity", "rules"), "rules": ("identity", "ingest"),
                "notify": ("identity",)}


def _settings(embedded: bool, peers: tuple[str, ...] = ()) -> Settings:
    try:
        return Settings.from_env(embedded=embedded, require_peers=peers)
    except ConfigError as exc:
        raise SystemExit(f"configuration error: {exc}") from None


def cmd_run(_: argparse.Namespace) -> None:
    """Everything in one process on SQLite + the in-process broker."""
    settings = _settings(embedded=True)
    hosting.check_ports([("GATEWAY_PORT", settings.gateway_host, settings.gateway_port),
                         ("GRPC_PORT", settings.grpc_host, settings.grpc_port)])
    address = f"{settings.grpc_host}:{settings.grpc_port}"
    settings = dataclasses.replace(settings, peers={n: address for n in hosting.SERVICES},
                                   announce_unfinished_at_start=settings.broker_url.startswith("stub"))
    configure_logging("suite", fmt=settings.log_format, level=settings.log_level,
                      secrets=[settings.internal_token])
    hosting.migrate(settings)
    broker = hosting.prepare_broker(queue.make_broker(settings.broker_url))
    runtimes, authenticator = hosting.build_runtimes(settings, broker, hosting.SERVICES)
    server, port, listener = hosting.start_server(settings, runtimes, authenticator)
    worker = hosting.start_worker(settings, broker, runtimes)
    for r in runtimes:
        r.start()
    from accrual_rules.bootstrap import RulesRuntime

    rules = next(r for r in runtimes if r.name == "rules")
    assert isinstance(rules, RulesRuntime)
    scheduler = rules.scheduler()
    scheduler.start(settings.scheduler_interval_seconds)
    key = _embedded_admin_key(settings)
    from accrual_gateway.app import create_app, serve_app

    channels = _channels(settings)
    app = create_app(channels, authenticator=authenticator, console_dir=settings.console_dir)
    print(f"""
Accrual is running (embedded: SQLite under {settings.var_dir.resolve()}, in-process broker)
  REST:     http://{settings.gateway_host}:{settings.gateway_port}   (docs: /docs, spec: /openapi.json)
  console:  http://{settings.gateway_host}:{settings.gateway_port}/console/   (sign in with the admin key)
  gRPC:     {settings.grpc_host}:{port}   (health + reflection enabled)
  admin API key (tenant "default"): {key}
Try:  curl -H "X-API-Key: {key}" http://{settings.gateway_host}:{settings.gateway_port}/v1/programs
""", flush=True)
    freeze_startup_heap()
    try:
        serve_app(app, settings.gateway_host, settings.gateway_port)
    finally:
        log.info("stopping")
        scheduler.stop()
        server.stop(10).wait()
        listener.stop()
        worker.stop()
        for r in runtimes:
            r.stop()


def _channels(settings: Settings) -> dict[str, str]:
    names = {"accrual.ingest.v1.IngestService": "ingest",
             "accrual.identity.v1.IdentityService": "identity",
             "accrual.rules.v1.RulesService": "rules",
             "accrual.rules.v1.RewardsService": "rules",
             "accrual.notify.v1.NotifyService": "notify"}
    return {full: settings.peer(short) for full, short in names.items()}


def _embedded_admin_key(settings: Settings) -> str:
    """The embedded demo keeps its admin key in var/ so every start can print it."""
    from accrual_identity import keys

    path = settings.var_dir / "admin_key"
    if path.exists():
        return path.read_text().strip()
    db = Database(settings.database_url, "identity", pool_size=1)
    try:
        _, key = keys.create_api_key(db, "default", frozenset({auth.ADMIN_SCOPE}))
    finally:
        db.dispose()
    files.write_private(path, key)
    return key


def cmd_serve(ns: argparse.Namespace) -> None:
    """One service's gRPC server (plus its outbox relay), configured by the environment."""
    settings = _settings(embedded=False, peers=PEERS_NEEDED[ns.service])
    hosting.check_ports([("GRPC_PORT", settings.grpc_host, settings.grpc_port)])
    configure_logging(ns.service, fmt=settings.log_format, level=settings.log_level,
                      secrets=[settings.internal_token])
    broker = hosting.prepare_broker(queue.make_broker(settings.broker_url))
    runtimes, authenticator = hosting.build_runtimes(settings, broker, [ns.service])
    server, port, listener = hosting.start_server(settings, runtimes, authenticator)
    for r in runtimes:
        r.start()
    keepers = [StatisticsKeeper(r.db) for r in runtimes]
    for k in keepers:
        k.start()
    freeze_startup_heap()
    log.info("serving", service=ns.service, port=port)
    wait_for_termination([lambda: server.stop(10).wait(), listener.stop,
                          *[r.stop for r in runtimes], *[k.stop for k in keepers]])


def cmd_worker(ns: argparse.Namespace) -> None:
    """Dramatiq workers for the queues of the named services."""
    needed = tuple(sorted({p for s in ns.services for p in PEERS_NEEDED[s]} - set()))
    settings = _settings(embedded=False, peers=needed)
    configure_logging("worker-" + "-".join(ns.services), fmt=settings.log_format,
                      level=settings.log_level, secrets=[settings.internal_token])
    broker = hosting.prepare_broker(queue.make_broker(settings.broker_url))
    runtimes, _ = hosting.build_runtimes(settings, broker, ns.services)
    worker = hosting.start_worker(settings, broker, runtimes)
    for r in runtimes:
        r.start()
    freeze_startup_heap()
    log.info("worker_started", queues=[q for r in runtimes for q in r.queues])
    wait_for_termination([worker.stop, *[r.stop for r in runtimes]])


def freeze_startup_heap() -> None:
    """Move what start-up made (modules, descriptors, compiled statements: most objects a
    process will ever hold) out of the garbage collector's sight (``gc.freeze``). A full
    collection otherwise walks all of it, a pause of tens of milliseconds that showed as the
    REST accept p99 (bench/README.md, "Heap freeze")."""
    gc.collect()
    gc.freeze()


def cmd_scheduler(_: argparse.Namespace) -> None:
    """The scheduled-events process (birthday, anniversary, inactivity). Run one or more: a
    PostgreSQL advisory lock makes exactly one of them the leader."""
    settings = _settings(embedded=False, peers=("identity", "ingest"))
    configure_logging("scheduler", fmt=settings.log_format, level=settings.log_level,
                      secrets=[settings.internal_token])
    from accrual_rules import bootstrap as rules_bootstrap

    runtime = rules_bootstrap.RulesRuntime(settings, queue.make_broker("stub://"))
    scheduler = runtime.scheduler()
    scheduler.start(settings.scheduler_interval_seconds)
    wait_for_termination([scheduler.stop, runtime.db.dispose])


def cmd_gateway(_: argparse.Namespace) -> None:
    settings = _settings(embedded=False, peers=tuple(hosting.SERVICES))
    hosting.check_ports([("GATEWAY_PORT", settings.gateway_host, settings.gateway_port)])
    configure_logging("gateway", fmt=settings.log_format, level=settings.log_level,
                      secrets=[settings.internal_token])
    from accrual_gateway.app import create_app, serve_app

    app = create_app(_channels(settings), authenticator=_gateway_authenticator(settings),
                     console_dir=settings.console_dir)
    freeze_startup_heap()
    serve_app(app, settings.gateway_host, settings.gateway_port)


def _database_settings() -> Settings:
    """Settings for a command that only needs the database: DATABASE_URL's, else the
    embedded suite's SQLite files."""
    try:
        settings = Settings.read()
    except ConfigError as exc:
        raise SystemExit(f"configuration error: {exc}") from None
    return settings if settings.database_url else _settings(embedded=True)


def _gateway_authenticator(settings: Settings) -> auth.CachedAuthenticator:
    """The gateway's key lookup: identity's AuthenticateApiKey, cached and evicted on
    revocation as every service's is."""
    from accrual_platform import revocations

    authenticator = hosting.remote_authenticator(settings)
    revocations.RevocationListener(settings.database_url, authenticator.evict).start()
    return authenticator


def cmd_migrate(_: argparse.Namespace) -> None:
    settings = _database_settings()
    configure_logging("migrate", fmt="console")
    hosting.migrate(settings)


def cmd_keys_create(ns: argparse.Namespace) -> None:
    from accrual_identity import keys

    try:
        scopes = auth.parse_scopes(ns.scopes)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    with _identity_db() as db:
        key_id, key = keys.create_api_key(db, ns.tenant, scopes)
    print(key)
    print(f"key id {key_id}, tenant {ns.tenant}, scopes {' '.join(sorted(scopes))} "
          "(the key is shown only once)", file=sys.stderr)


@contextlib.contextmanager
def _identity_db() -> Iterator[Database]:
    """Identity's database for the keys commands: DATABASE_URL, else the embedded SQLite
    files, migrated first so that keys can be made before the suite's first start. Database
    errors become one line (an unmigrated DATABASE_URL is the likely one)."""
    from accrual_platform import errors, migrations
    from sqlalchemy import exc as sa_exc

    url = _database_settings().database_url
    where = "DATABASE_URL"
    if url.startswith("sqlite"):
        where = url
        identity = hosting.bootstrap_module("identity")
        migrations.upgrade(url, identity.SCHEMA, identity.MIGRATIONS)
    db = Database(url, "identity", pool_size=1)
    try:
        yield db
    except errors.Unavailable as exc:
        raise SystemExit(f"cannot reach identity's database on {where} ({_first_line(exc.__cause__)})") from None
    except sa_exc.DBAPIError as exc:
        raise SystemExit(f"cannot use identity's tables on {where} ({_first_line(exc)}); "
                         "are its migrations applied (make migrate)?") from None
    except errors.AppError as exc:
        raise SystemExit(exc.message) from None
    finally:
        db.dispose()


def _first_line(exc: BaseException | None) -> str:
    return str(getattr(exc, "orig", None) or exc).splitlines()[0]


def cmd_keys_list(ns: argparse.Namespace) -> None:
    """The tenant's keys, revoked ones too: ids and prefixes, never a key itself."""
    from accrual_identity import keys
    from accrual_identity.validation import MAX_PAGE_SIZE

    with _identity_db() as db:
        tenant_id = keys.tenant_by_name(db, ns.tenant)
        if tenant_id is None:
            raise SystemExit(f"no tenant named {ns.tenant!r}")
        rows, token = keys.list_api_keys(db, tenant_id, MAX_PAGE_SIZE)
        while token:
            more, token = keys.list_api_keys(db, tenant_id, MAX_PAGE_SIZE, token)
            rows.extend(more)
    print(f"{'KEY ID':<36}  {'PREFIX':<10}  {'CREATED':<20}  {'REVOKED':<20}  SCOPES")
    for r in rows:
        revoked = _when(r.revoked_at) if r.revoked_at else "-"
        print(f"{r.id:<36}  {r.prefix:<10}  {_when(r.created_at):<20}  {revoked:<20}  "
              f"{','.join(r.scopes)}")


def _when(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def cmd_keys_revoke(ns: argparse.Namespace) -> None:
    """Revoke a key by id; every running process refuses it within a second (PostgreSQL)."""
    from accrual_identity import keys

    with _identity_db() as db:
        record, revoked_now = keys.revoke(db, ns.key_id)
    assert record.revoked_at is not None
    state = "revoked" if revoked_now else "already revoked"
    print(f"key {record.id} ({record.prefix}…) {state} at {_when(record.revoked_at)}")


def cmd_demo(ns: argparse.Namespace) -> None:
    """Create the seed-001 demo program on a running suite and print curl commands to try it."""
    from accrual_suite import demo

    try:
        settings = Settings.read()
        # GATEWAY_HOST/GATEWAY_PORT read as `accrual run` reads them, reached from this machine
        base_url = ns.base_url or demo.local_url(settings.gateway_host, settings.gateway_port)
        key = ns.api_key or settings.api_key or demo.default_key(settings.var_dir)
        program, rules = demo.create_demo(base_url, key)
    except demo.DemoError as exc:
        raise SystemExit(f"demo: {exc}") from None
    print(demo.instructions(base_url, key, program, rules))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="accrual", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="whole suite in one process (SQLite, in-process broker)"
                   ).set_defaults(fn=cmd_run)
    p = sub.add_parser("serve", help="one service's gRPC server")
    p.add_argument("service", choices=hosting.SERVICES)
    p.set_defaults(fn=cmd_serve)
    p = sub.add_parser("worker", help="Dramatiq workers of services")
    p.add_argument("services", nargs="+", choices=hosting.SERVICES)
    p.set_defaults(fn=cmd_worker)
    sub.add_parser("gateway", help="REST/JSON gateway").set_defaults(fn=cmd_gateway)
    sub.add_parser("scheduler", help="scheduled events (birthday, anniversary, inactivity); one leader"
                   ).set_defaults(fn=cmd_scheduler)
    sub.add_parser("migrate", help="apply every service's migrations to DATABASE_URL"
                   ).set_defaults(fn=cmd_migrate)
    keys = sub.add_parser("keys", help="API keys").add_subparsers(dest="keys_command", required=True)
    p = keys.add_parser("create", help="create an API key and print it (shown once)")
    p.add_argument("--tenant", required=True)
    p.add_argument("--scopes", required=True, help="comma or space separated, e.g. admin")
    p.set_defaults(fn=cmd_keys_create)
    p = keys.add_parser("list", help="list a tenant's keys (ids and prefixes, never the keys)")
    p.add_argument("--tenant", required=True)
    p.set_defaults(fn=cmd_keys_list)
    p = keys.add_parser("revoke", help="revoke a key by its id (see keys list)")
    p.add_argument("key_id")
    p.set_defaults(fn=cmd_keys_revoke)
    p = sub.add_parser("demo", help="create a demo program with the seed rules on a running suite")
    p.add_argument("--base-url", help="REST gateway of the suite (default: the embedded one, "
                   "at GATEWAY_HOST and GATEWAY_PORT as `accrual run` reads them)")
    p.add_argument("--api-key", help="API key with programs:write (default: ACCRUAL_API_KEY, else "
                   "the embedded admin key in var/)")
    p.set_defaults(fn=cmd_demo)
    ns = parser.parse_args(argv)
    try:
        ns.fn(ns)
    except ConfigError as exc:  # e.g. a missing or wrong SECRETS_KEY found by notify at start
        raise SystemExit(f"configuration error: {exc}") from None


if __name__ == "__main__":
    main()
