"""Safe loading: no code from a model file ever runs.

ONNX graphs load through onnxruntime. A skops file loads only with the trusted
types listed in the configuration (``[model] trusted_types``), never with types
read from the file. Pickle-family files (pickle, joblib, cloudpickle, dill) are
refused outright.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shipml.errors import UnsafeModelError

PICKLE_SUFFIXES = frozenset({".pkl", ".pickle", ".joblib", ".cloudpickle", ".dill", ".sav", ".p"})
_REPACKAGE = (
    "load it yourself where you trust it, then package it safely: "
    "shipml.package_model(model, X_valid) writes ONNX (or skops with configured trusted types)"
)


def is_pickle(path: Path) -> bool:
    """A pickle-family file, by name or by its first bytes (protocol 2+ starts with 0x80)."""
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return True
    try:
        with path.open("rb") as fh:
            head = fh.read(2)
    except OSError:
        return False
    return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def refuse_pickle(path: Path) -> None:
    if path.is_file() and is_pickle(path):
        raise UnsafeModelError(
            f"{path} is a pickle-family file; loading it could run arbitrary code, so shipml "
            "refuses it",
            hint=_REPACKAGE,
        )


def load_skops(path: Path, trusted_types: list[str]) -> Any:
    """Load a skops file trusting only ``trusted_types`` (from configuration)."""
    import skops.io as sio

    refuse_pickle(path)
    untrusted = set(sio.get_untrusted_types(file=path))
    missing = sorted(untrusted - set(trusted_types))
    if missing:
        raise UnsafeModelError(
            f"{path} contains types that are not trusted: {', '.join(missing)}",
            hint="if you trust them, list them in shipml.toml under [model] trusted_types",
        )
    return sio.load(path, trusted=sorted(untrusted))
