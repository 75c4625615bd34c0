"""Start the per-service deployment (one OS process per service, worker and gateway) on
PostgreSQL + RabbitMQ, exactly as the Procfile does, in a database of its own."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field

import httpx
import psycopg
from accrual_platform.testing import SECRETS_KEY, free_port

BIN = pathlib.Path(sys.executable).parent / "accrual"
SERVICES = ("identity", "ingest", "rules", "notify")


def process_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far; 0 when it is gone."""
    try:
        fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_cpu_seconds() -> dict[str, float]:
    """CPU time used so far by all PostgreSQL and all RabbitMQ processes of the machine."""
    out = {"postgres": 0.0, "rabbitmq": 0.0}
    for proc in pathlib.Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            comm = (proc / "comm").read_text().strip()
        except OSError:
            continue
        if comm == "postgres":
            out["postgres"] += process_cpu_seconds(int(proc.name))
        elif comm.startswith("beam"):
            out["rabbitmq"] += process_cpu_seconds(int(proc.name))
    return out


def fresh_database(admin_url: str, name: str) -> str:
    """Drop and create ``name`` on the server of ``admin_url`` (a libpq URL); its libpq URL."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + "/" + name


def purge_broker(broker_url: str) -> None:
    """Empty the suite's queues so a run never drains an earlier run's leftovers."""
    import pika

    params = pika.URLParameters(broker_url)
    connection = pika.BlockingConnection(params)
    try:
        channel = connection.channel()
        for name in ("rules", "ingest", "notify"):
            for q in (name, f"{name}.DQ", f"{name}.XQ"):
                try:
                    channel.queue_delete(q)
                except Exception:
                    channel = connection.channel()
    finally:
        connection.close()


@dataclass
class Deployment:
    database_url: str  # SQLAlchemy URL
    broker_url: str
    workdir: pathlib.Path
    extra_env: dict[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _commands: dict[str, tuple[list[str], dict[str, str]]] = field(default_factory=dict)
    _env: dict[str, str] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    api_key: str = ""
    rules_workers: int = 1
    #: Ingest service processes; more than one are reached round robin (INGEST_ADDR lists them).
    ingest_replicas: int = 1

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['gateway']}"

    @property
    def ingest_address(self) -> str:
        return f"127.0.0.1:{self.ports['ingest']}"

    def env(self) -> dict[str, str]:
        p = self.ports
        ingest = ",".join(f"127.0.0.1:{port}" for name, port in p.items() if name.partition("-")[0] == "ingest")
        return {**os.environ, "DATABASE_URL": self.database_url, "BROKER_URL": self.broker_url,
                "INTERNAL_TOKEN": "bench-" + uuid.uuid4().hex, "LOG_FORMAT": "json", "LOG_LEVEL": "WARNING",
                "SECRETS_KEY": SECRETS_KEY,
                "IDENTITY_ADDR": f"127.0.0.1:{p['identity']}", "INGEST_ADDR": ingest,
                "RULES_ADDR": f"127.0.0.1:{p['rules']}", "NOTIFY_ADDR": f"127.0.0.1:{p['notify']}",
                "GATEWAY_PORT": str(p["gateway"]), "MALLOC_ARENA_MAX": "2", **self.extra_env}

    def start(self) -> None:
        self.ports = {name: free_port() for name in (*SERVICES, "gateway")}
        for i in range(1, self.ingest_replicas):
            self.ports[f"ingest-{i}"] = free_port()
        env = self.env()
        subprocess.run([str(BIN), "migrate"], env=env, check=True, capture_output=True)
        self.api_key = subprocess.run(
            [str(BIN), "keys", "create", "--tenant", "bench", "--scopes", "admin"],
            env=env, check=True, capture_output=True, text=True).stdout.strip()
        commands: dict[str, tuple[list[str], dict[str, str]]] = {
            s: (["serve", s], {"GRPC_PORT": str(self.ports[s])}) for s in SERVICES}
        for i in range(1, self.ingest_replicas):
            commands[f"ingest-{i}"] = (["serve", "ingest"], {"GRPC_PORT": str(self.ports[f"ingest-{i}"])})
        for i in range(self.rules_workers):
            commands[f"worker-rules-{i}"] = (["worker", "rules"], {})
        commands["worker-ingest"] = (["worker", "ingest"], {})
        commands["worker-notify"] = (["worker", "notify"], {})
        commands["gateway"] = (["gateway"], {})
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._commands = commands
        self._env = env
        try:
            for name in commands:
                self.launch(name)
            self._wait_ready()
        except BaseException:
            self.stop()  # a failed start leaves no process behind to steal the next run's messages
            raise

    def create_key(self, tenant: str, scopes: str = "admin") -> str:
        """A new API key of ``tenant`` (the deployment's own key is the ``bench`` tenant's)."""
        return subprocess.run([str(BIN), "keys", "create", "--tenant", tenant, "--scopes", scopes],
                              env=self._env, check=True, capture_output=True, text=True).stdout.strip()

    def launch(self, name: str) -> None:
        """(Re)start one process of the deployment; its log is appended to."""
        args, extra = self._commands[name]
        with (self.workdir / f"{name}.log").open("ab") as log:
            self.procs[name] = subprocess.Popen([str(BIN), *args], env={**self._env, **extra}, stdout=log,
                                                stderr=subprocess.STDOUT)

    def signal(self, name: str, sig: int, wait: float | None = None) -> int | None:
        """Send ``sig`` to one process; with ``wait``, wait for it to exit and return its code."""
        p = self.procs[name]
        if p.poll() is None:
            p.send_signal(sig)
        return p.wait(wait) if wait is not None else None

    def wait_ready(self, timeout: float = 300) -> None:
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float = 300) -> None:
        """``timeout``: a start on a machine at load 35-45 took more than 90 s."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            for name, p in self.procs.items():
                if p.poll() is not None:
                    raise RuntimeError(f"{name} exited early; see {self.workdir}/{name}.log")
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError("the gateway never became ready")

    def peak_rss_mb(self) -> dict[str, float]:
        """Peak resident set (VmHWM) of every process, in MB."""
        out: dict[str, float] = {}
        for name, p in self.procs.items():
            try:
                status = pathlib.Path(f"/proc/{p.pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    out[name] = int(line.split()[1]) / 1024
        return out

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) used so far by each process of the suite, and by all
        PostgreSQL and RabbitMQ processes of the machine (backends of live pools included)."""
        return {**{name: process_cpu_seconds(p.pid) for name, p in self.procs.items()}, **server_cpu_seconds()}

    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.procs.items()}

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
