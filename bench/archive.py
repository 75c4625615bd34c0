"""bench/results keeps the latest run of each kind; older runs leave a line in an index.

A new run of `make bench` (`<time>.json` and `.md`) or of `make profile` (`profile-<time>.txt`)
deletes the files of the runs of its kind before it, after appending their headline figures to
the index, bench/results/README.md. The files themselves stay in git history.
"""

from __future__ import annotations

import json
import pathlib
import re
from collections.abc import Callable
from typing import Any

MISSING = "-"  # a figure the run did not measure
INDEX_TITLE = "# Earlier runs"
INDEX_INTRO = """\
bench/results keeps the latest `make bench` run (`<time>.json` and `.md`) and the latest
`make profile` run (`profile-<time>.txt`). Each new run deletes the files of the run before
it and adds that run's headline figures below; git history keeps the files. Figures of
different moments are not comparable: this machine's speed drifts by 10-25% within minutes.
"""
BENCH_TABLE = "## make bench"
BENCH_HEAD = ("run (UTC)", "REST accept/s", "REST accept/s, paused", "REST p99 at half load",
              "batch accept/s, paused", "end to end/s", "accept → COMPLETED p99 at 1,000/s",
              "µs per event, 100 rules", "highest peak RSS", "ingest processes")
PROFILE_TABLE = "## make profile"
PROFILE_HEAD = ("run (UTC)", "REST accept/s, paused", "REST p99, paused", "batch accept/s, paused",
                "drain/s")
_PROFILE_LINES = (
    re.compile(r"^1\. REST single-event accepts.*?: ([\d,]+)/s, p50 [\d.]+ ms, p99 ([\d.]+) ms", re.M),
    re.compile(r"^2\. 1,000-event batch accepts.*?: ([\d,]+) events/s", re.M),
    re.compile(r"^3\. pipeline drain of [\d,]+ events: ([\d,]+) events/s", re.M),
)


def _num(value: Any, unit: str = "") -> str:
    if value is None:
        return MISSING
    return f"{value:,.0f}{unit}" if value >= 100 else f"{value:.1f}{unit}"


def bench_row(path: pathlib.Path) -> tuple[str, ...]:
    """Headline figures of one `make bench` run (its .json)."""
    f: dict[str, Any] = json.loads(path.read_text())

    def get(phase: str, key: str) -> Any:
        return (f.get(phase) or {}).get(key)

    rss = f.get("peak_rss_mb") or {}
    top = max(rss.items(), key=lambda kv: kv[1]) if rss else None
    return (f["when"][:16].replace("T", " "),
            _num(get("rest_accept", "per_s")),
            _num(get("rest_accept_paused", "per_s")),
            _num(get("rest_half_load", "p99_ms"), " ms"),
            (_num(get("batch_accept_paused", "per_s")) if "batch_accept_paused" in f
             else f"{_num(get('batch_accept', 'per_s'))} (pipeline running)"),
            _num(get("e2e_throughput", "per_s")),
            _num(get("e2e_latency", "p99_ms"), " ms"),
            _num(get("rules", "us_per_event")),
            f"{top[1]:.0f} MB ({top[0]})" if top else MISSING,
            str(f.get("ingest_replicas", 1)))


def profile_row(path: pathlib.Path) -> tuple[str, ...]:
    """Headline figures of one `make profile` report."""
    text = path.read_text()
    stamp = path.stem.removeprefix("profile-")
    when = f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]} {stamp[9:11]}:{stamp[11:13]}"
    found = [m.groups() if m else None for m in (p.search(text) for p in _PROFILE_LINES)]
    rest, batch, drain = found
    return (when,
            rest[0] if rest else MISSING, f"{rest[1]} ms" if rest else MISSING,
            batch[0] if batch else MISSING,
            drain[0] if drain else MISSING)


def _table(title: str, head: tuple[str, ...]) -> list[str]:
    return [title, "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]


def add_to_index(index: pathlib.Path, title: str, head: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    """Append ``rows`` to the table under ``title`` in ``index`` (made when missing)."""
    if not rows:
        return
    lines = index.read_text().splitlines() if index.exists() else [INDEX_TITLE, "", *INDEX_INTRO.splitlines()]
    if title not in lines:
        lines += ["", *_table(title, head)]
    at = lines.index(title) + 1
    while at < len(lines) and not lines[at].startswith("|"):
        at += 1
    while at < len(lines) and lines[at].startswith("|"):
        at += 1
    lines[at:at] = ["| " + " | ".join(row) + " |" for row in rows]
    index.write_text("\n".join(lines) + "\n")


def _keep_only(latest: pathlib.Path, older: list[pathlib.Path], title: str, head: tuple[str, ...],
               row: Callable[[pathlib.Path], tuple[str, ...]], companions: tuple[str, ...] = ()) -> None:
    older = sorted(p for p in older if p.name < latest.name)
    add_to_index(latest.parent / "README.md", title, head, [row(p) for p in older])
    for p in older:
        for suffix in companions:
            p.with_suffix(suffix).unlink(missing_ok=True)
        p.unlink()


def keep_latest_bench(latest: pathlib.Path) -> None:
    """Index and delete every `make bench` run older than ``latest`` (a .json file)."""
    _keep_only(latest, list(latest.parent.glob("2*.json")), BENCH_TABLE, BENCH_HEAD, bench_row, (".md",))


def keep_latest_profile(latest: pathlib.Path) -> None:
    """Index and delete every `make profile` report older than ``latest``."""
    _keep_only(latest, list(latest.parent.glob("profile-*.txt")), PROFILE_TABLE, PROFILE_HEAD, profile_row)
