"""Batch scoring throughput: `shipml predict` in one process, `--engine dask` with 1 and
2 local workers, and a bare onnxruntime loop (the physical limit of one core:
inference only, on inputs already in memory).

    .venv/bin/python benchmarks/batch_engine.py --rows 1000000 10000000 --rounds 3

Trains the penguins model of the serving tests (imputation, one-hot, 30-tree forest),
writes the penguins rows repeated to N rows as Parquet (row groups of 100k rows), then,
for each size, runs every variant once per round in an interleaved order (A B C D, A B
C D, ...) and prints rows/s (median over rounds) and the median of the per-round ratios
to the single process. Each variant reads the Parquet file and writes Parquet, except
the bare loop, which runs the session on inputs prepared before it is timed (10M rows
of inputs take about 2 GB of memory). The dask variants include
starting and stopping their local cluster, as the command does.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_package(folder: Path) -> Path:
    from palmerpenguins import load_penguins

    from shipml.model import build_package
    from tests.serving.conftest import penguins_model

    df = load_penguins().dropna(subset=["species"]).reset_index(drop=True)
    X, y = df.drop(columns=["species"]), df["species"]
    build_package(penguins_model(X, y), X, y, path=folder / "penguins")
    return folder / "penguins"


def make_rows(folder: Path, rows: int) -> Path:
    from palmerpenguins import load_penguins

    X = load_penguins().dropna(subset=["species"]).drop(columns=["species"])
    X = X.dropna().reset_index(drop=True)
    base = pd.concat([X] * (100_000 // len(X) + 1), ignore_index=True).iloc[:100_000]
    path = folder / f"rows-{rows}.parquet"
    writer = None
    for start in range(0, rows, len(base)):
        table = pa_table(base.iloc[: min(len(base), rows - start)])
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table, row_group_size=100_000)
    assert writer is not None
    writer.close()
    return path


def pa_table(frame: pd.DataFrame):  # type: ignore[no-untyped-def]
    import pyarrow as pa

    return pa.Table.from_pandas(frame, preserve_index=False)


def bare_feeds(package: Path, source: Path) -> tuple[object, list[dict[str, np.ndarray]]]:
    """The session and its inputs in 50k-row chunks, ready before the clock starts."""
    from shipml.serving.predictor import Predictor
    from shipml.serving.validation import Validator

    predictor = Predictor.load(package, name="penguins")
    validator = Validator(predictor.signature)
    feeds = []
    for batch in pq.ParquetFile(source).iter_batches(batch_size=50_000):
        frame = batch.to_pandas()
        rows = validator.columns({n: frame[n].to_numpy() for n in validator.features})
        feeds.append(predictor.feeds(rows))
    return predictor, feeds


def bare_loop(predictor: object, feeds: list[dict[str, np.ndarray]]) -> int:
    """Only onnxruntime: one single-threaded session over in-memory inputs (no reading,
    no validation, no output): the limit of one core."""
    rows = 0
    for feed in feeds:
        predictor._session.run(None, feed)  # type: ignore[attr-defined]
        rows += len(next(iter(feed.values())))
    return rows


def local_process(package: Path, source: Path, out: Path) -> int:
    from shipml.serving.batch import predict_file
    from shipml.serving.predictor import Predictor

    predictor = Predictor.load(package, name="penguins")
    return predict_file(predictor, source, out / "local.parquet").rows


def engine(workers: int) -> Callable[[Path, Path, Path], int]:
    def run(package: Path, source: Path, out: Path) -> int:
        import shutil

        from shipml.serving.distributed import predict_distributed

        target = out / f"dask{workers}.parquet"
        shutil.rmtree(target, ignore_errors=True)
        result = predict_distributed(
            package, str(source), str(target), name="penguins", version="1", workers=workers
        )
        return result.rows

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="shipml-bench-") as tmp:
        folder = Path(tmp)
        package = make_package(folder)
        bare: dict[str, object] = {}
        variants: dict[str, Callable[[Path, Path, Path], int]] = {
            "bare onnxruntime loop": lambda p, s, o: bare_loop(bare["p"], bare["f"]),  # type: ignore[arg-type]
            "shipml predict (1 process)": local_process,
            "--engine dask, 1 worker": engine(1),
            "--engine dask, 2 workers": engine(2),
        }
        for rows in args.rows:
            source = make_rows(folder, rows)
            bare["p"], bare["f"] = bare_feeds(package, source)
            speed: dict[str, list[float]] = {name: [] for name in variants}
            for r in range(args.rounds):
                order = list(variants) if r % 2 == 0 else list(reversed(variants))
                for name in order:
                    started = time.perf_counter()
                    done = variants[name](package, source, folder)
                    assert done == rows, (name, done)
                    speed[name].append(rows / (time.perf_counter() - started))
            local = speed["shipml predict (1 process)"]
            print(f"\n{rows:,} rows, {args.rounds} rounds (rows/s, median; ratio to 1 process)")
            for name, values in speed.items():
                ratio = statistics.median(v / lo for v, lo in zip(values, local, strict=True))
                print(f"  {name:<28} {statistics.median(values):>12,.0f}   {ratio:.2f}x")
            source.unlink()
            bare.clear()


if __name__ == "__main__":
    main()
