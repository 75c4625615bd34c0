"""Tenants' expressions run in a pool of child processes, never in a service process.

Rule expressions are hostile input: one can crash the engine (deep nesting overflows its
stack), loop for seconds (holding the GIL, so every other tenant's request in the same
process would wait) or ask for gigabytes. Each child (accrual_rules.sandbox_child) runs under
an address-space limit and a CPU deadline per expression; the parent only waits on a pipe,
which releases the GIL. When a child dies, the parent reads from the shared marker which rule
of which job was running, records the breach as that rule's answer, replaces the child and
asks again for the rest. A whole batch of events goes in one request (in chunks), so the
round trip is paid per chunk and not per rule.

What a death means:
- killed by its CPU timer, or stalled without progress: ``evaluation_timeout``;
- out of memory (MemoryError, or the engine's allocation failure): ``evaluation_resource_exhausted``;
- anything else (a segfault, a panic, a child stuck without using its CPU): the same (job,
  rule) is tried once more in a new child, and a second death fails the job with
  ``evaluation_crashed``.
A rule that breaches ``suspend_after`` times (its stored count plus this batch's) is not run
again for the rest of the batch; the caller suspends it.
"""

from __future__ import annotations

import collections
import contextlib
import decimal
import mmap
import os
import pickle
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog
from accrual_platform import errors

from accrual_rules.domain.evaluation import Answer, Breach, EventFacts, ProgramPolicy, RuleSpec, ordered
from accrual_rules.sandbox_child import EXIT_MEMORY, MARKER, decode, encode

log = structlog.get_logger("accrual.rules.sandbox")

TIMEOUT = "evaluation_timeout"
EXHAUSTED = "evaluation_resource_exhausted"
CRASHED = "evaluation_crashed"
#: Jobs per request: a death loses at most one chunk's finished work.
CHUNK = 64
#: Scheduling niceness of the sandbox's children.
NICENESS = 10


@dataclass(frozen=True)
class Job:
    """One event for one program: what answers_for needs."""

    program: ProgramPolicy
    rules: Sequence[RuleSpec]
    facts: EventFacts
    lifetime_points: decimal.Decimal


@dataclass
class Outcome:
    """Answers per job (in ``ordered(rules)`` order; None for a job that crashed the evaluator
    twice), and the breaches per rule id found on the way."""

    answers: list[list[Answer] | None]
    breaches: dict[str, list[str]] = field(default_factory=dict)


class Died(Exception):
    def __init__(self, reason: str, job: int, position: int, detail: str) -> None:
        super().__init__(f"{reason} at job {job} position {position}: {detail}")
        self.reason, self.job, self.position, self.detail = reason, job, position, detail


class _Child:
    def __init__(self, deadline_ms: float, memory_mb: int) -> None:
        fd, self.marker_path = tempfile.mkstemp(prefix="accrual-sandbox-", dir=_shm_dir())
        os.write(fd, bytes(MARKER.size))
        os.close(fd)
        with open(self.marker_path, "r+b") as f:
            self.marker = mmap.mmap(f.fileno(), MARKER.size)
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed with the child, in close())
        # Only a safety net: CPU-bound work is ended by the child's own timer, and a child that
        # merely waits for a CPU on a busy machine must not be taken for a stuck one.
        self.stall_seconds = max(10.0, 100 * deadline_ms / 1000)
        self.killed_for_stall = False
        # Tenants' expressions yield the CPU to the accept path and other tenants' requests;
        # the niceness is set before the child starts, so its start-up yields too.
        self.proc = subprocess.Popen(
            [*_NICE, sys.executable, "-m", "accrual_rules.sandbox_child", self.marker_path,
             str(deadline_ms), str(memory_mb)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, close_fds=True,
            start_new_session=True)
        try:
            if self._read(startup=True) != "ready":
                raise errors.Unavailable("the rule sandbox did not start")
        finally:
            # Both have it mapped now: unlinked at once, it cannot outlive a killed parent.
            with contextlib.suppress(OSError):
                os.unlink(self.marker_path)

    def position(self) -> tuple[int, int, int]:
        job, pos, count = MARKER.unpack_from(self.marker, 0)
        return job, pos, count

    def request(self, kind: str, payload: Any) -> Any:
        body = pickle.dumps((kind, payload), protocol=pickle.HIGHEST_PROTOCOL)
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(len(body).to_bytes(4, "big") + body)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._died() from None
        return self._read()

    def _read(self, *, startup: bool = False) -> Any:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        buf = bytearray()
        need = 4
        size = -1
        last = (self.position()[2], time.monotonic())
        while len(buf) < need:
            ready, _, _ = select.select([fd], [], [], 0.25)
            if not ready:
                count, since = last
                now_count = self.position()[2]
                if now_count != count:
                    last = (now_count, time.monotonic())
                elif time.monotonic() - since > (30.0 if startup else self.stall_seconds):
                    # Not progressing and not burning CPU past its timer: stuck. Kill it.
                    self.killed_for_stall = True
                    self.kill()
                    raise self._died()
                continue
            chunk = os.read(fd, max(65536, need - len(buf)))
            if not chunk:
                raise self._died()
            buf += chunk
            if size < 0 and len(buf) >= 4:
                size = int.from_bytes(buf[:4], "big")
                need = 4 + size
        return orjson.loads(bytes(buf[4:need]))

    def _died(self) -> Died:
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self.proc.wait()
        job, pos, _ = self.position()
        self.stderr.seek(0, os.SEEK_END)
        size = self.stderr.tell()
        self.stderr.seek(max(0, size - 2048))
        tail = self.stderr.read().decode(errors="replace")
        if code in (-signal.SIGPROF, -signal.SIGXCPU):
            reason = TIMEOUT
        elif code == EXIT_MEMORY or (code == -signal.SIGKILL and not self.killed_for_stall) or (
                code == -signal.SIGABRT and "memory allocation" in tail):
            reason = EXHAUSTED
        else:
            reason = CRASHED
        self.close()
        return Died(reason, job, pos, f"exit {code}")

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()

    def close(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()
        if self.proc.poll() is None:
            self.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
        self.stderr.close()
        with contextlib.suppress(OSError, ValueError):
            self.marker.close()


_NICE = ["nice", "-n", str(NICENESS)] if shutil.which("nice") else []


def _shm_dir() -> str | None:
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


class Sandbox:
    """A pool of up to ``processes`` evaluator children, started on first use."""

    def __init__(self, *, deadline_ms: float = 50.0, memory_mb: int = 256, processes: int = 2,
                 suspend_after: int = 3) -> None:
        self.deadline_ms = deadline_ms
        self.memory_mb = memory_mb
        self.processes = max(1, processes)
        self.suspend_after = suspend_after
        self._idle: collections.deque[_Child] = collections.deque()
        self._count = 0
        self._cond = threading.Condition()
        self._closed = False
        #: children that died, by reason (tests and logs read it)
        self.deaths: collections.Counter[str] = collections.Counter()

    # -- pool -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _child(self) -> Iterator[_Child]:
        with self._cond:
            while not self._idle and self._count >= self.processes:
                self._cond.wait()
            if self._closed:
                raise errors.Unavailable("the rule sandbox is stopped")
            child = self._idle.popleft() if self._idle else None
            if child is None:
                self._count += 1
        if child is None:
            try:
                child = _Child(self.deadline_ms, self.memory_mb)
            except BaseException as exc:
                with self._cond:
                    self._count -= 1
                    self._cond.notify()
                if isinstance(exc, Died):  # no rule ran yet: the sandbox itself is failing
                    log.error("rule_sandbox_start_failed", detail=exc.detail)
                    raise errors.Unavailable("the rule sandbox could not start, retry") from None
                raise
        alive = True
        try:
            yield child
        except Died:
            alive = False
            raise
        except BaseException:
            alive = False
            child.close()
            raise
        finally:
            with self._cond:
                if alive and not self._closed:
                    self._idle.append(child)
                else:
                    self._count -= 1
                    if alive:
                        child.close()
                self._cond.notify()

    def _request(self, kind: str, payload: Any) -> Any:
        with self._child() as child:
            try:
                return child.request(kind, payload)
            except Died as died:
                self.deaths[died.reason] += 1
                raise

    def close(self) -> None:
        with self._cond:
            self._closed = True
            while self._idle:
                self._idle.popleft().close()
                self._count -= 1
            self._cond.notify_all()

    # -- rules ----------------------------------------------------------------------------
    def answers(self, jobs: Sequence[Job], *, earlier: Mapping[str, int] | None = None,
                known: Sequence[Mapping[int, Answer]] | None = None) -> Outcome:
        """What every job's rules give (each job's rules in ``ordered`` order). ``earlier``:
        breaches per rule id found since the rules were read (they count towards
        ``suspend_after``); ``known``: per job, answers by position not to ask again."""
        outcome = Outcome(answers=[])
        skipped: dict[str, Answer] = {}
        prior = {r.rule_id: r.budget_breaches + (earlier or {}).get(r.rule_id, 0)
                 for job in jobs for r in job.rules}
        for rule_id, count in prior.items():
            if count >= self.suspend_after:
                skipped[rule_id] = Breach(TIMEOUT, f"not run: the rule went over its budget {count} times "
                                          "and is suspended")
        for start in range(0, len(jobs), CHUNK):
            chunk = [(job.program, ordered(job.rules), job.facts, job.lifetime_points)
                     for job in jobs[start:start + CHUNK]]
            given = {(j, pos): a for j, answers in enumerate((known or [])[start:start + CHUNK])
                     for pos, a in answers.items()}
            outcome.answers.extend(self._chunk(chunk, outcome, skipped, prior, given))
        return outcome

    def _chunk(self, chunk: list[Any], outcome: Outcome, skipped: dict[str, Answer],
               prior: Mapping[str, int], given: dict[tuple[int, int], Answer]) -> list[list[Answer] | None]:
        crashes: collections.Counter[tuple[int, int]] = collections.Counter()
        failed: set[int] = set()
        unplaced = 0
        while True:
            try:
                reply = self._request("answers", (
                    chunk, {k: encode(v) for k, v in given.items()}, failed,
                    {k: encode(v) for k, v in skipped.items()}))
            except Died as died:
                j, pos = died.job, died.position
                if not (0 <= j < len(chunk) and 0 <= pos < len(chunk[j][1])):
                    # It died outside any rule (reading the request, say): try again, then give up.
                    unplaced += 1
                    log.warning("rule_sandbox_died_outside_rule", reason=died.reason, detail=died.detail)
                    if unplaced > 1:
                        raise errors.Unavailable("the rule sandbox keeps failing, retry") from None
                    continue
                rule = chunk[j][1][pos]
                reason = died.reason
                if reason == CRASHED:
                    crashes[(j, pos)] += 1
                    log.warning("rule_crashed_evaluator", rule_id=rule.rule_id, event_id=chunk[j][2].event_id,
                                detail=died.detail, attempt=crashes[(j, pos)])
                    if crashes[(j, pos)] < 2:
                        continue
                    failed.add(j)
                else:
                    log.warning("rule_over_budget", rule_id=rule.rule_id, event_id=chunk[j][2].event_id,
                                reason=reason, detail=died.detail)
                    given[(j, pos)] = Breach(reason, _budget_message(reason, self))
                found = outcome.breaches.setdefault(rule.rule_id, [])
                found.append(reason)
                if prior.get(rule.rule_id, 0) + len(found) >= self.suspend_after:
                    skipped[rule.rule_id] = Breach(reason, (
                        f"not run: the rule went over its budget {prior.get(rule.rule_id, 0) + len(found)} "
                        "times and is suspended"))
                continue
            numbers: dict[str, decimal.Decimal] = {}
            return [None if j in failed else [decode(a, numbers) for a in answers]
                    for j, answers in enumerate(reply)]

    # -- save-time checks -------------------------------------------------------------------
    def check(self, tasks: Sequence[tuple[str, Sequence[dict[str, Any]]]]) -> list[Any]:
        """Compile each source and run it on its sample contexts. A task that kills the child
        answers ["died", reason] and the rest are still run."""
        out: list[Any] = [None] * len(tasks)
        todo = list(range(len(tasks)))
        while todo:
            try:
                reply = self._request("check", [tasks[t] for t in todo])
            except Died as died:
                i = died.job if 0 <= died.job < len(todo) else 0
                out[todo[i]] = ["died", died.reason]
                todo = todo[:i] + todo[i + 1:]
                continue
            for t, result in zip(todo, reply, strict=True):
                out[t] = result
            break
        return out


def _budget_message(reason: str, sandbox: Sandbox) -> str:
    if reason == TIMEOUT:
        return f"the rule's expressions ran past {sandbox.deadline_ms:g} ms of CPU and were stopped"
    return f"the rule's expressions asked for more than {sandbox.memory_mb} MB and were stopped"
