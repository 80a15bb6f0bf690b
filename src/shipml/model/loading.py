"""Safe loading: no code from a model file ever runs.

ONNX graphs load through onnxruntime. A skops file loads only with the trusted
types listed in the configuration (``[model] trusted_types``), never with types
read from the file. Pickle-family files (pickle, joblib, cloudpickle, dill) are
refused outright.

A package reads only its own files: every file its manifest names, and every file its
ONNX graph names as external data, must be a plain path inside the package folder (no
absolute path, no ``..``, no symlink); the graph is loaded from that folder.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from shipml.errors import ModelError, UnsafeModelError
from shipml.model.onnx_wire import WireError, external_locations

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
    try:
        untrusted = set(sio.get_untrusted_types(file=path))
    except Exception as exc:  # not a zip, not skops's schema: skops raises assorted types
        raise _not_skops(path, exc) from exc
    missing = sorted(untrusted - set(trusted_types))
    if missing:
        raise UnsafeModelError(
            f"{path} contains types that are not trusted: {', '.join(missing)}",
            hint="if you trust them, list them in shipml.toml under [model] trusted_types",
        )
    try:
        return sio.load(path, trusted=sorted(untrusted))
    except Exception as exc:
        raise _not_skops(path, exc) from exc


def _not_skops(path: Path, exc: Exception) -> ModelError:
    return ModelError(
        f"{path} is not a readable skops file: {type(exc).__name__}: {str(exc)[:200]}",
        hint="re-package the model with shipml.package_model",
    )


# -- confinement: a package reads only its own files ------------------------------------------


def confined(folder: Path, name: str) -> Path:
    """``folder/name`` if ``name`` is a plain relative path to a regular file inside
    ``folder`` (no absolute path, no ``..``, no symlink on the way); else an error."""
    pure = PurePosixPath(name)
    if (
        not name
        or "\\" in name
        or "\x00" in name
        or pure.is_absolute()
        or any(part in ("..", "") for part in name.split("/"))
    ):
        raise UnsafeModelError(
            f"model package {folder} names the file {name[:80]!r}, which is not a plain "
            "path inside the package",
            hint="a package may name only files inside its own folder; re-package the model",
        )
    path = folder
    for part in pure.parts:
        path = path / part
        if path.is_symlink():
            raise UnsafeModelError(
                f"model package {folder}: {name[:80]!r} is, or goes through, a symbolic link",
                hint="a package holds its files itself; re-package the model",
            )
    return path


def external_data_files(model_file: Path) -> list[str]:
    """The files an ONNX graph reads its tensors from (external data), as written in it.
    The graph is parsed without loading any of them (``onnx_wire``: no ``onnx`` import)."""
    try:
        return external_locations(model_file)
    except (WireError, OSError) as exc:
        raise ModelError(
            f"{model_file} is not a readable ONNX model: {str(exc)[:200]}",
            hint="re-package the model with shipml.package_model",
        ) from exc


def check_external_data(folder: Path, model_file: Path, listed: set[str]) -> None:
    """Refuse a graph whose external data lies outside ``folder``, goes through a symlink,
    or is not one of the package's ``listed`` (sha256-checked) files."""
    for name in external_data_files(model_file):
        path = confined(folder, name)
        if name not in listed or not path.is_file():
            raise UnsafeModelError(
                f"{model_file} reads tensor data from {name[:80]!r}, which is not a file of "
                "the package's manifest",
                hint="external data must be a file inside the package, listed in package.json",
            )


def onnx_session(folder: Path, model_file: Path, listed: set[str]) -> Any:
    """An onnxruntime session for a package's graph, loaded from the package's own folder
    (external data resolves there, never against the working directory), after
    ``check_external_data``. One thread per session, like every shipml session."""
    import onnxruntime as ort

    check_external_data(folder, model_file, listed)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(model_file), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelError(
            f"onnxruntime cannot load {model_file}: {str(exc)[:300]}",
            hint="re-package the model with shipml.package_model",
        ) from exc
