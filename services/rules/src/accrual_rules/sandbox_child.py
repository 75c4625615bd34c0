"""The sandbox's child process: evaluates tenants' expressions where a crash, a runaway loop or
a huge allocation takes down only this process (see accrual_rules.sandbox).

Run as ``python -m accrual_rules.sandbox_child MARKER DEADLINE_MS MEMORY_MB``. Requests come
on stdin as length-prefixed pickles from the parent (trusted); replies go to stdout as
length-prefixed JSON, so a child whose memory a hostile expression corrupted can hand the
parent only data, never code. Before each rule it writes which (job, rule) it is on into the
shared MARKER file, so the parent knows what was running when the child died, and keeps a
CPU timer armed (ITIMER_PROF, whose default action ends the process): an expression that
runs past the deadline kills the child at once, even while the engine holds the GIL.
"""

from __future__ import annotations

import contextlib
import decimal
import mmap
import os
import pickle
import resource
import signal
import struct
import sys
import time
import traceback
from typing import Any

import orjson

from accrual_rules.domain.evaluation import Breach, answers_for
from accrual_rules.domain.expressions import ExpressionError, compile_expression, shown, to_decimal

MARKER = struct.Struct("<iiq")  # job, rule, progress count
EXIT_MEMORY = 3
EXIT_CRASH = 4


def read_frame(stream: Any) -> bytes | None:
    head = stream.read(4)
    if len(head) < 4:
        return None
    size = int.from_bytes(head, "big")
    body = stream.read(size)
    return body if len(body) == size else None


def write_frame(stream: Any, body: bytes) -> None:
    stream.write(len(body).to_bytes(4, "big") + body)
    stream.flush()


def encode(answer: Any) -> Any:
    """An answer as JSON: null, false, a number as its text (most answers: kept small, since a
    batch has tens of thousands), ["e", message] or ["b", reason, message]."""
    if answer is None or answer is False:
        return answer
    if type(answer) is decimal.Decimal:
        return str(answer)
    if type(answer) is str:
        return ["e", answer]
    if type(answer) is Breach:
        return ["b", answer.reason, answer.message]
    raise TypeError(f"cannot encode {type(answer).__name__}")


def decode(raw: Any, numbers: dict[str, decimal.Decimal] | None = None) -> Any:
    """The answer ``encode`` wrote; ``numbers`` caches the Decimals of one reply (many
    answers of a batch are the same number)."""
    if raw is None or raw is False:
        return raw
    if type(raw) is str:
        if numbers is None:
            return decimal.Decimal(raw)
        number = numbers.get(raw)
        if number is None:
            number = numbers[raw] = decimal.Decimal(raw)
        return number
    if raw[0] == "e":
        return str(raw[1])
    if raw[0] == "b":
        return Breach(str(raw[1]), str(raw[2]))
    raise ValueError(f"unknown answer {raw!r}")


class Guard:
    """Marks progress and keeps the CPU deadline armed. The timer is re-armed only when a
    tenth of the deadline has passed since it was last armed (one clock read per rule
    instead of one system call), so each expression gets between 0.9 and 1 deadline."""

    def __init__(self, marker: mmap.mmap, deadline: float) -> None:
        self.marker = marker
        self.deadline = deadline
        self.rearm_after = deadline / 10
        self.armed_at = 0.0
        self.count = 0
        self.job = 0

    def arm(self) -> None:
        signal.setitimer(signal.ITIMER_PROF, self.deadline)
        self.armed_at = time.perf_counter()

    def disarm(self) -> None:
        signal.setitimer(signal.ITIMER_PROF, 0)

    def mark(self, job: int, rule: int) -> None:
        self.count += 1
        MARKER.pack_into(self.marker, 0, job, rule, self.count)
        if time.perf_counter() - self.armed_at > self.rearm_after:
            self.arm()

    def before(self, rule: int) -> None:
        self.mark(self.job, rule)


def run_answers(guard: Guard, payload: Any) -> list[Any]:
    """``payload``: jobs (program, ordered rules, facts, lifetime points), the answers already
    known by (job, rule) position (breaches found by earlier children), the jobs not to
    evaluate (crashed twice) and, by rule id, the answer of rules not to run any more."""
    jobs, given, failed, skipped = payload
    out: list[Any] = []
    for j, (program, rules, facts, lifetime) in enumerate(jobs):
        if j in failed:
            out.append(None)
            continue
        guard.job = j
        known = {r: decode(a) for (gj, r), a in given.items() if gj == j}
        if skipped:
            for i, rule in enumerate(rules):
                if rule.rule_id in skipped:
                    known.setdefault(i, decode(skipped[rule.rule_id]))
        answers = answers_for(program, rules, facts, lifetime, guard.before, known)
        out.append([encode(a) for a in answers])
    return out


def run_check(guard: Guard, payload: Any) -> list[Any]:
    """``payload``: tasks of (source, sample contexts). Per task: ["compile", message,
    [start, end, line, column] or null] when the source does not compile, else per sample one of ["bool", value],
    ["num", text], ["null"], ["other", short JSON], ["err", message]."""
    out: list[Any] = []
    for t, (source, contexts) in enumerate(payload):
        guard.mark(t, 0)
        try:
            compiled = compile_expression(source)
        except ExpressionError as exc:
            pos = exc.position
            out.append(["compile", exc.message,
                        [pos.start, pos.end, pos.line, pos.column] if pos is not None else None])
            continue
        results: list[Any] = []
        for s, ctx in enumerate(contexts):
            guard.mark(t, s)
            try:
                value = compiled.evaluate(ctx)
            except ExpressionError as exc:
                results.append(["err", exc.message])
                continue
            if value is None:
                results.append(["null"])
            elif isinstance(value, bool):
                results.append(["bool", value])
            else:
                try:
                    results.append(["num", str(to_decimal(value))])
                except ExpressionError:
                    results.append(["other", shown(value)])
        out.append(results)
    return out


HANDLERS = {"answers": run_answers, "check": run_check}


def _vm_size() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _warm_up() -> None:
    """The engine's first error costs about 100 ms (it sets up its backtraces): paid here,
    before the first deadline is armed."""
    with contextlib.suppress(ExpressionError):
        compile_expression("1 +")
    compile_expression("1 + 1").evaluate({})


def main() -> None:
    marker_path, deadline_ms, memory_mb = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    with open(marker_path, "r+b") as f:
        marker = mmap.mmap(f.fileno(), MARKER.size)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    _warm_up()
    # The limit is this process's own size after its start-up plus the budget, so the budget
    # is what expressions may allocate.
    if memory_mb > 0:
        limit = _vm_size() + memory_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    guard = Guard(marker, deadline_ms / 1000)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    write_frame(stdout, b'"ready"')
    while True:
        frame = read_frame(stdin)
        if frame is None:
            return  # the parent closed the pipe: it stopped or replaced this child
        kind, payload = pickle.loads(frame)
        MARKER.pack_into(marker, 0, -1, -1, guard.count)
        guard.arm()
        try:
            reply = HANDLERS[kind](guard, payload)
        except MemoryError:
            os._exit(EXIT_MEMORY)
        except BaseException:  # an engine panic or a bug: this child is not to be trusted any more
            traceback.print_exc(limit=5)  # to the parent's stderr file; the parent logs the exit
            os._exit(EXIT_CRASH)
        guard.disarm()
        write_frame(stdout, orjson.dumps(reply))


if __name__ == "__main__":
    main()
