"""bench/results keeps the latest run of each kind; older ones leave their figures in the index."""

from __future__ import annotations

import json
import pathlib

from bench import archive


def bench_run(d: pathlib.Path, when: str, rest: float, rss: dict[str, float]) -> pathlib.Path:
    stamp = when.replace(":", "").replace("-", "")
    (d / f"{stamp}.md").write_text("# run\n")
    path = d / f"{stamp}.json"
    path.write_text(json.dumps({"when": when, "rest_accept": {"per_s": rest}, "rest_half_load": {"p99_ms": 12.34},
                                "batch_accept": {"per_s": 800.0}, "e2e_latency": {"p99_ms": 1234.5},
                                "peak_rss_mb": rss}))
    return path


def test_a_bench_run_replaces_the_older_ones_and_indexes_them(tmp_path: pathlib.Path) -> None:
    first = bench_run(tmp_path, "2026-11-23T15:17:58+00:00", 211.2, {"ingest": 177.4, "rules": 101.0})
    second = bench_run(tmp_path, "2026-12-01T18:09:47+00:00", 1469.0, {"gateway": 105.0})
    (tmp_path / "profile-20261123T171950.txt").write_text("unrelated kind\n")
    archive.keep_latest_bench(second)
    latest = bench_run(tmp_path, "2026-12-07T00:15:44+00:00", 1500.0, {"gateway": 110.0})
    archive.keep_latest_bench(latest)

    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "20261207T001544+0000.json", "20261207T001544+0000.md", "README.md", "profile-20261123T171950.txt"]
    assert not first.exists()
    index = (tmp_path / "README.md").read_text().splitlines()
    rows = [line for line in index if line.startswith("| 2026")]
    assert rows == [
        "| 2026-11-23 15:17 | 211 | - | 12.3 ms | 800 (pipeline running) | - | 1,234 ms | - | 177 MB (ingest) | 1 |",
        "| 2026-12-01 18:09 | 1,469 | - | 12.3 ms | 800 (pipeline running) | - | 1,234 ms | - | 105 MB (gateway) | 1 |",
    ]
    assert index.count(archive.BENCH_TABLE) == 1


def test_a_profile_run_replaces_the_older_reports(tmp_path: pathlib.Path) -> None:
    old = tmp_path / "profile-20261206T224349.txt"
    old.write_text("Accrual profile ...\n\n1. REST single-event accepts, workers paused: 1,736/s, p50 36 ms, "
                   "p99 56 ms\n   CPU\n2. 1,000-event batch accepts, workers paused: 15,556 events/s\n"
                   "3. pipeline drain of 18,737 events: 1,657 events/s\n")
    (tmp_path / "README.md").write_text(f"{archive.INDEX_TITLE}\n\n{archive.BENCH_TABLE}\n\n| a |\n|---|\n| x |\n")
    new = tmp_path / "profile-20261206T234456.txt"
    new.write_text("report\n")
    archive.keep_latest_profile(new)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", new.name]
    index = (tmp_path / "README.md").read_text()
    assert "| 2026-12-06 22:43 | 1,736 | 56 ms | 15,556 | 1,657 |" in index
    assert index.index("| x |") < index.index(archive.PROFILE_TABLE)  # the bench table is left as it was
