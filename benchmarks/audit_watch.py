"""The dashboard's audit verdict per view: the whole log verified (what every view of
`shipml dashboard` did, `verify_project`) against the process's ``LogWatch`` going on
from its last verdict.

A project's log of ``--records`` records (what `shipml serve` writes for one single-row
breast-cancer request, as in ``audit_log.py``), its key pinned. A writer stays open, as
a running server does, and appends ``--between`` records before each view (about what
arrives in the dashboard's 30 s refresh at a few requests a second). Each round times a
whole verification, then ``--views`` watch views, then as many with nothing new (a
flood of views); printed: the medians, the median of the rounds' ratios, and the share
of a core the whole verification every ``FULL_EVERY_S`` takes, however many views come.

A busy server signs a checkpoint every second, 86,400 rows a day: ``--checkpoint-every
N`` writes one every N records, to see what a view costs after months of them.

    .venv/bin/python benchmarks/audit_watch.py [--records 1000000] [--between 100]
        [--rounds 3] [--views 10] [--checkpoint-every 10000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import tomlkit

from shipml.audit import key_fingerprint, open_log, verify_project
from shipml.audit.watch import FULL_EVERY_S, LogWatch
from shipml.config import load_config

try:
    from audit_log import record
except ImportError:  # run as a module from the repository root
    from benchmarks.audit_log import record


def project(root: Path, n: int, every: int | None) -> None:
    """A project whose audit log holds ``n`` records, its key pinned, a checkpoint every
    ``every`` records (the setting's default when None)."""
    settings: dict[str, dict[str, object]] = {"project": {"name": "watched"}}
    if every is not None:
        settings["audit"] = {"checkpoint_every": every}
    (root / "shipml.toml").write_text(tomlkit.dumps(settings))
    config = load_config(root)
    log = open_log(config)  # first use: the key is made and pinned in shipml.toml
    batch = min(5000, every or 5000)
    for start in range(0, n, batch):
        log.append_many([record(i) for i in range(start, min(n, start + batch))])
    log.close()
    assert load_config(root).audit.key_fingerprint == key_fingerprint(
        config.path(config.audit.signing_key)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--between", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--views", type=int, default=10, help="watch views per round")
    parser.add_argument("--checkpoint-every", type=int, default=None, help="records a checkpoint")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        project(root, args.records, args.checkpoint_every)
        config = load_config(root)
        rows = open_log(config, writer=False)
        (count,) = rows.db.execute("SELECT COUNT(*) FROM checkpoints").fetchone()
        rows.close()
        print(
            f"a log of {args.records:,} records and {count:,} checkpoint rows built in "
            f"{time.perf_counter() - start:.0f} s"
        )
        watch = LogWatch(config)
        start = time.perf_counter()
        assert watch.verify().ok
        first = time.perf_counter() - start
        writer = open_log(config)
        seq = args.records
        whole: list[float] = []
        views: list[float] = []
        ratios: list[float] = []
        idle: list[float] = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            result = verify_project(config)
            whole.append(time.perf_counter() - start)
            assert result.ok, result.problem
            for _ in range(args.views):
                writer.append_many([record(i) for i in range(seq, seq + args.between)])
                seq += args.between
                start = time.perf_counter()
                seen = watch.verify()
                views.append(time.perf_counter() - start)
                assert seen.ok and seen.records == seq, seen.problem
            ratios.append(whole[-1] / statistics.median(views[-args.views :]))
            for _ in range(args.views):  # nothing new: what a flood of views costs
                start = time.perf_counter()
                assert watch.verify().records == seq
                idle.append(time.perf_counter() - start)
        writer.close()
        assert watch.whole_runs == 1
    a, b = statistics.median(whole), statistics.median(views)
    print(f"whole verification (every view before)  {a * 1000:>10.1f} ms  (median of {len(whole)})")
    print(f"the watch's first verification (whole)  {first * 1000:>10.1f} ms")
    print(
        f"a watch view, {args.between} new records        {b * 1000:>10.2f} ms  "
        f"(median of {len(views)}; max {max(views) * 1000:.2f})"
    )
    print(f"a watch view, nothing new               {statistics.median(idle) * 1000:>10.2f} ms")
    print(
        f"whole / watch view                      {statistics.median(ratios):>10.0f}x  "
        f"(median of the rounds' ratios: {', '.join(f'{r:.0f}' for r in ratios)})"
    )
    print(
        f"one whole verification every {FULL_EVERY_S:.0f} s, however many views: "
        f"{a / FULL_EVERY_S:.1%} of a core"
    )


if __name__ == "__main__":
    main()
