"""The model package: what gets registered, tested, served and audited.

A package is a folder::

    model.onnx        the graph (or model.skops, the fallback for what ONNX cannot express)
    signature.json    feature names, types, allowed categories, nullability; classes
    profile.json      the reference profile of the validation data (for drift monitoring)
    lineage.json      run id, dataset digests, git commit, package versions
    holdout.parquet   the held-out rows it was validated on, with their labels (tests use them)
    train_rows.parquet  a 64-bit hash of every training row and its label (leakage tests,
                      rebuilding the training rows from the dataset; no feature values)
    package.json      the manifest: format, sha256 of every file, parity report

Packaging checks the ONNX graph against the original model on the validation
data before anything is written; a failure is a ``ParityError``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from shipml.errors import ModelError
from shipml.files import replacing_folder, sha256_file
from shipml.model.convert import (
    ConversionUnsupported,
    check_parity,
    probe_missing,
    session,
    to_onnx,
)
from shipml.model.converters import frameworks_in
from shipml.model.loading import confined, onnx_session
from shipml.model.sealing import MANIFEST, json_bytes, new_manifest, seal, write_rest
from shipml.model.signature import (
    Signature,
    infer_signature,
    model_input,
    onnx_feeds,
    probe_unseen,
    with_unseen_policy,
)

if TYPE_CHECKING:  # pandas is imported where a frame is read: the server never needs it
    import pandas as pd

T = TypeVar("T")
MODEL_FILES = {"onnx": "model.onnx", "skops": "model.skops"}
# Every package lists these: what it computes and what it was made from. A file the
# manifest does not list (and so verify does not check) is never read.
CORE_FILES = ("signature.json", "lineage.json", "profile.json")


@dataclass
class ModelPackage:
    """A packaged model in a folder, read through its manifest."""

    path: Path
    manifest: dict[str, Any]

    # -- reading ----------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, *, verify: bool = True) -> ModelPackage:
        folder = Path(path)
        manifest_path = folder / MANIFEST
        if manifest_path.is_symlink():
            confined(folder, MANIFEST)  # raises: a manifest is the package's own file
        if not manifest_path.is_file():
            raise ModelError(
                f"{folder} is not a shipml model package (no {MANIFEST})",
                hint="make one with shipml.package_model(model, X) in a pipeline step",
            )
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            files = manifest["files"]
            if not (isinstance(files, dict) and all(isinstance(v, str) for v in files.values())):
                raise TypeError("'files' is not a table of file digests")
            if manifest.get("format") not in MODEL_FILES:
                raise ValueError(
                    f"format {str(manifest.get('format'))[:40]!r} is not onnx or skops"
                )
            unlisted = [f for f in (MODEL_FILES[manifest["format"]], *CORE_FILES) if f not in files]
            if unlisted:
                raise ValueError(f"it lists no sha256 for {', '.join(unlisted)}")
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            raise ModelError(
                f"{manifest_path} is not a valid package manifest: {str(exc)[:200]}",
                hint="re-package the model; never edit package.json",
            ) from exc
        pkg = cls(folder, manifest)
        if verify:
            pkg.verify()
        return pkg

    def verify(self) -> None:
        """Every file listed in the manifest exists and has its recorded sha256."""
        for name, digest in self.manifest["files"].items():
            file = confined(self.path, name)
            if not file.is_file():
                raise ModelError(f"model package {self.path} lacks {name}", hint="re-package it")
            actual = sha256_file(file)
            if actual != digest:
                raise ModelError(
                    f"{file} was modified: sha256 {actual[:16]}... but the manifest says "
                    f"{digest[:16]}...",
                    hint="never edit a package; make a new one from the pipeline",
                )

    @property
    def format(self) -> str:
        return str(self.manifest["format"])

    @property
    def model_file(self) -> Path:
        return self.file(MODEL_FILES[self.format])

    def file(self, name: str) -> Path:
        """The package's file ``name``: one its manifest lists (sha256-checked by verify),
        inside its folder; else an error."""
        if name not in self.manifest["files"]:
            raise ModelError(
                f"model package {self.path} does not list {name} in its manifest",
                hint="a package reads only the files its manifest lists; re-package the model",
            )
        return confined(self.path, name)

    @property
    def onnx_sha256(self) -> str | None:
        return self.manifest["files"].get("model.onnx")

    @property
    def digest(self) -> str:
        """sha256 over the manifest's file digests: the identity of the package's content."""
        return hashlib.sha256(json_bytes(self.manifest["files"])).hexdigest()

    @property
    def model_digest(self) -> str:
        """sha256 over the model file and the signature: what the model computes, without the
        lineage (a re-run that trains the identical model has the same model digest)."""
        files = self.manifest["files"]
        core = {k: files[k] for k in ("model.onnx", "model.skops", "signature.json") if k in files}
        return hashlib.sha256(json_bytes(core)).hexdigest()

    @property
    def signature(self) -> Signature:
        return self._json("signature.json", Signature.from_dict)

    @property
    def lineage(self) -> dict[str, Any]:
        return self._json("lineage.json", dict)

    @property
    def profile(self) -> dict[str, Any]:
        return self._json("profile.json", dict)

    def _json(self, name: str, read: Callable[[Any], T]) -> T:
        """The package's JSON file ``name``, read by ``read``; a file that is not what it
        should be is a ModelError (a sealed package may still be hostile)."""
        try:
            return read(json.loads(self.file(name).read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            raise ModelError(
                f"{self.path / name} is not a valid {name}: {type(exc).__name__}: {str(exc)[:200]}",
                hint="re-package the model with shipml.package_model",
            ) from exc

    @property
    def label(self) -> str | None:
        """Name of the label column in ``holdout.parquet`` (None: no labels were given)."""
        return self.manifest.get("label")

    def holdout(self) -> tuple[pd.DataFrame, pd.Series | None]:
        """The held-out features (model convention) and their labels."""
        import pandas as pd

        file = self.path / "holdout.parquet"
        if "holdout.parquet" not in self.manifest["files"]:
            raise ModelError(
                f"{self.path} has no holdout.parquet (packaged by an older shipml)",
                hint="re-run the pipeline with `shipml run --no-cache` to repackage the model",
            )
        frame = pd.read_parquet(self.file(file.name))
        label = self.label
        y = frame.pop(label) if label is not None and label in frame.columns else None
        return model_input(frame[self.signature.names], self.signature), y

    def train_rows(self) -> pd.DataFrame | None:
        """The training rows as ``hash`` (64-bit, of the features) and, when given,
        ``label``; None if the package was made without them."""
        import pandas as pd

        name = "train_rows.parquet"
        return pd.read_parquet(self.file(name)) if name in self.manifest["files"] else None

    def train_row_hashes(self) -> np.ndarray | None:
        """Sorted, unique 64-bit hashes of the training rows' features, if given."""
        rows = self.train_rows()
        return None if rows is None else np.unique(rows["hash"].to_numpy(dtype=np.uint64))

    @cached_property
    def _session(self) -> tuple[Any, Signature]:
        return self.onnx_session(), self.signature

    def onnx_session(self) -> Any:
        """The graph's onnxruntime session, confined to the package's own files."""
        return onnx_session(self.path, self.model_file, set(self.manifest["files"]))

    def predict(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
        """Labels and (for classifiers) class probabilities, through ONNX."""
        if self.format != "onnx":
            raise ModelError(
                f"{self.path} holds a skops model; load it with shipml.model.load_skops",
                hint="list its types in [model] trusted_types first",
            )
        sess, sig = self._session
        outputs = sess.run(None, onnx_feeds(model_input(df[sig.names], sig), sig))
        proba = np.asarray(outputs[1]) if len(outputs) > 1 else None
        return np.asarray(outputs[0]).reshape(-1), proba


def row_hashes(frame: pd.DataFrame) -> np.ndarray:
    """A 64-bit hash of each row's values, in row order (frame in the model convention)."""
    import pandas as pd

    hashed = pd.util.hash_pandas_object(frame.reset_index(drop=True), index=False)
    return hashed.to_numpy(dtype=np.uint64)


def _final_estimator(model: Any) -> Any:
    steps = getattr(model, "steps", None)
    return _final_estimator(steps[-1][1]) if steps else model


def _write_model(
    model: Any,
    frame: pd.DataFrame,
    signature: Signature,
    tolerance: float,
    folder: Path,
    manifest: dict[str, Any],
) -> Signature:
    """model.onnx, checked for parity, or model.skops when skl2onnx cannot express the
    model; a boosted-tree model (XGBoost, LightGBM, CatBoost) is ONNX or an error. Returns
    the signature with the ONNX input layout and the measured nullability."""
    try:
        onnx_bytes, signature = to_onnx(model, signature)
        sess = session(onnx_bytes)
        parity = check_parity(model, sess, frame, signature, tolerance)
        handles = probe_missing(sess, frame, signature)
    except ConversionUnsupported as exc:
        boosted = frameworks_in(model)
        strings = [f.name for f in signature.features if f.type == "string"]
        if boosted and strings and not hasattr(model, "steps"):
            raise ModelError(
                f"a bare {type(model).__name__} cannot take the string features "
                f"{', '.join(strings[:3])} in ONNX",
                hint="encode them in a Pipeline before the model (a ColumnTransformer with "
                "a OneHotEncoder, as the template's features.py does)",
            ) from exc
        if boosted:
            raise ModelError(
                f"the {', '.join(boosted)} model cannot be converted to ONNX: {exc.message}",
                hint="shipml packages boosted trees as ONNX only (never pickle or skops); "
                "keep the pipeline to steps skl2onnx converts, with numeric and string "
                "features",
            ) from exc
        import skops.io as sio

        sio.dump(model, folder / "model.skops")
        needed = sorted(sio.get_untrusted_types(file=folder / "model.skops"))
        manifest.update(format="skops", onnx_error=exc.message, types_to_trust=needed)
        return signature
    (folder / "model.onnx").write_bytes(onnx_bytes)
    manifest.update(format="onnx", parity=parity.to_dict())
    return replace(
        signature,
        features=[replace(f, nullable=f.nullable or handles[f.name]) for f in signature.features],
    )


def _with_unseen_policy(
    model: Any,
    frame: pd.DataFrame,
    signature: Signature,
    folder: Path,
    unseen: dict[str, str] | None,
) -> Signature:
    """The signature with each string feature's unseen-category policy, after running the
    packaged model (ONNX, else the skops fallback) on a category it never saw."""
    onnx_file = folder / "model.onnx"
    if onnx_file.is_file():
        sess = session(onnx_file.read_bytes())
        handled = probe_unseen(lambda f: sess.run(None, onnx_feeds(f, signature)), frame, signature)
    else:
        handled = probe_unseen(lambda f: [model.predict(f)], frame, signature)
    return with_unseen_policy(signature, handled, unseen)


def build_package(
    model: Any,
    X: pd.DataFrame,
    y: Any = None,
    *,
    path: str | Path,
    lineage: dict[str, Any] | None = None,
    reference_profile: dict[str, Any] | None = None,
    tolerance: float = 1e-4,
    train: pd.DataFrame | None = None,
    train_labels: Any = None,
    unseen: dict[str, str] | None = None,
) -> ModelPackage:
    """Package a fitted scikit-learn model, validated on ``X`` (and ``y``), into ``path``.

    The ONNX graph must reproduce ``model`` on ``X``: labels on every row and
    probabilities within ``tolerance``. Models skl2onnx cannot express are saved
    with skops instead. ``X`` and ``y`` are kept as the package's holdout rows; the rows
    of ``train``, if given, only as hashes (with ``train_labels``, if given). The signature
    is read from every row given (``train`` and ``X``); ``unseen`` sets a string feature's
    unseen-category policy (accept | error; default: accept where the model is shown to
    handle a category it never saw). Written atomically: a failed packaging leaves
    nothing."""
    import pandas as pd

    if not isinstance(X, pd.DataFrame) or X.empty:
        raise ModelError(
            f"package_model needs the validation features as a non-empty DataFrame, got "
            f"{type(X).__name__}",
            hint="pass the held-out rows, e.g. package_model(model, valid.drop(columns=[target]))",
        )
    frame = model_input(X)
    from sklearn.base import is_classifier

    final = _final_estimator(model)
    # CatBoostRegressor has an (empty) classes_ too: only a classifier has classes
    classes = getattr(final, "classes_", None) if is_classifier(final) else None
    seen = frame if train is None else pd.concat([model_input(train[frame.columns]), frame])
    signature = infer_signature(seen, y, classes=classes)
    target = Path(path)
    with replacing_folder(target, prefix=".pkg-") as tmp:
        manifest = new_manifest(
            estimator=f"{type(model).__module__}.{type(model).__qualname__}",
            final_estimator=f"{type(final).__module__}.{type(final).__qualname__}",
        )
        signature = _write_model(model, frame, signature, tolerance, tmp, manifest)
        signature = _with_unseen_policy(model, frame, signature, tmp, unseen)
        write_rest(tmp, frame, y, signature, manifest, lineage, reference_profile)
        if train is not None:
            rows = pd.DataFrame({"hash": row_hashes(model_input(train[frame.columns]))})
            if train_labels is not None:
                rows["label"] = np.asarray(train_labels)
            rows.to_parquet(tmp / "train_rows.parquet", index=False)
        seal(tmp, manifest)
    return ModelPackage(target, manifest)
