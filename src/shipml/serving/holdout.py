"""The model's predictions on its hold-out rows: the live monitor's reference for
prediction drift and the hold-out quality it shows next to live quality.

For an ONNX package they are computed by a short-lived child process, so that the
server never loads pyarrow and pandas to read ``holdout.parquet``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def holdout_predictions(predictor: Any) -> tuple[np.ndarray, dict[str, float]]:
    """The model's labels for (up to 5000 of) its hold-out rows, and its quality on them."""
    from shipml.data.quality import Quality
    from shipml.serving.validation import Rows

    X, y = predictor.package.holdout()
    X = X.head(5000)
    rows = Rows(len(X), columns={n: X[n].to_numpy() for n in predictor.names})
    labels = predictor.run(predictor.feeds(rows)).labels
    quality = Quality(predictor.signature.task)
    if y is not None:
        quality.add(y.head(5000).tolist(), labels.tolist())
    return labels, quality.metrics()


_CHILD = (
    "import sys; from shipml.serving.holdout import _print_holdout_predictions as p; p(sys.argv[1])"
)


def holdout_predictions_aside(
    package: Path,
) -> tuple[np.ndarray, dict[str, float], dict[str, Any]]:
    """``holdout_predictions`` of an ONNX package, computed by a short-lived child process,
    with the profile of those predictions (the prediction-drift reference): reading
    ``holdout.parquet`` or profiling a column would load pyarrow and pandas into the
    server for good (about 90 MiB of resident memory, more than the rest of the server)."""
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-P", "-c", _CHILD, str(package)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
        raise RuntimeError(f"the hold-out predictions failed: {tail[0][:300]}")
    answer = json.loads(done.stdout.strip().splitlines()[-1])  # a library may print first
    labels = np.asarray(answer["labels"], dtype=np.dtype(answer["dtype"]))
    return labels, answer["quality"], answer["profile"]


def _print_holdout_predictions(package: str) -> None:
    """In the child process: ``holdout_predictions`` as one JSON object on stdout."""
    import json
    import sys

    import pandas as pd

    from shipml.data.profile import column_profile
    from shipml.serving.predictor import Predictor

    try:
        labels, quality = holdout_predictions(Predictor.load(Path(package)))
        profile = column_profile(pd.Series(labels))
    except Exception as exc:  # one line for the server's log, not a traceback
        sys.stderr.write(f"{type(exc).__name__}: {' '.join(str(exc).split())}\n")
        raise SystemExit(1) from None
    answer = {"labels": labels.tolist(), "dtype": labels.dtype.str, "quality": quality}
    print(json.dumps({**answer, "profile": profile}))
