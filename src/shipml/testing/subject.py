"""The model under test: its package, registry entry, held-out rows and training data.

Everything a check needs is read once and kept: the package (ONNX + signature +
holdout rows + training-row hashes), the registry version it came from, the dataset
snapshots its lineage names, and the training rows rebuilt from those snapshots.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shipml.config import ProjectConfig
from shipml.data import DatasetStore
from shipml.errors import RegistryError, TestingError
from shipml.model import ModelPackage, model_input
from shipml.model.package import row_hashes
from shipml.serving.predictor import Predictor
from shipml.serving.validation import Rows
from shipml.tracking import ResolvedModel, VersionInfo, registry_for, resolve_model


def resolve_ref(config: ProjectConfig, ref: str | None) -> str:
    """The REF to test: the one given, ``[tests] ref``, or the newest registered version."""
    if ref:
        return ref
    if config.tests.ref:
        return config.tests.ref
    try:
        with warnings.catch_warnings():  # MLflow's store warns about SQLAlchemy internals
            warnings.simplefilter("ignore", DeprecationWarning)
            versions = registry_for(config).versions(config.model_name)
    except RegistryError:  # no such model yet
        versions = []
    if not versions:
        raise TestingError(
            f"model {config.model_name!r} has no registered version to test",
            hint="run the pipeline first (`shipml run`), or name a package folder",
        )
    newest = max(versions, key=lambda v: int(v.version))
    return newest.ref


def handoff(model: ResolvedModel, aliases: dict[str, str] | None, file: Path) -> None:
    """Write what ``Subject.load(..., resolved=file)`` reads: the resolved model and the
    aliases of its name (None for a package folder)."""
    info = asdict(model.info) if model.info is not None else None
    record = {"ref": model.ref, "path": str(model.path), "info": info, "aliases": aliases}
    file.write_text(json.dumps(record), encoding="utf-8")


def _handed_over(file: Path, ref: str | None) -> tuple[ResolvedModel, Any] | None:
    """The model in ``file`` and its name's aliases, if it is the one ``ref`` names; None
    otherwise (then the registry answers)."""
    try:
        record = json.loads(file.read_text(encoding="utf-8"))
        info = VersionInfo(**record["info"]) if record["info"] is not None else None
        path, aliases = Path(record["path"]), record["aliases"]
    except (OSError, ValueError, TypeError, KeyError):
        return None
    if not ref or record.get("ref") != ref:
        return None
    if aliases is not None and not (
        isinstance(aliases, dict) and all(isinstance(v, str) for v in aliases.values())
    ):
        return None
    if info is None:
        return ResolvedModel(path, path.name, "1"), None
    return ResolvedModel(path, info.name, info.version, None, True, info), aliases


@dataclass
class Subject:
    """A model package under test, with the registry version it is (None for a folder)."""

    config: ProjectConfig
    package: ModelPackage
    version: VersionInfo | None = None
    aliases: dict[str, str] | None = None  # of the name, when resolved (None: not read yet)
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def load(
        cls,
        config: ProjectConfig,
        ref: str | None = None,
        *,
        resolved: Path | None = None,
        full: bool = True,
    ) -> Subject:
        """The model ``ref`` names. ``resolved`` is a file ``handoff`` wrote for that same
        ref (``shipml test`` resolves the model before it starts pytest): its package
        folder, registry record and aliases are taken from it, sparing this process
        MLflow. ``full=False``: the record holds only the name and version (no tags, run
        or aliases), read without MLflow from an embedded registry."""
        given = _handed_over(resolved, ref) if resolved is not None else None
        if given is not None:
            model, aliases = given
            return cls(config, ModelPackage.load(model.path), model.info, aliases)
        with warnings.catch_warnings():  # MLflow's store warns about SQLAlchemy internals
            warnings.simplefilter("ignore", DeprecationWarning)
            model = resolve_model(config, resolve_ref(config, ref), full=full)
        info = model.info
        if info is None and model.registered:
            info = VersionInfo(model.name, model.version, str(model.path), None)
        return cls(config, ModelPackage.load(model.path), info)

    def aliases_of_name(self) -> dict[str, str]:
        """The aliases of this model's name (as handed over, else from the registry)."""
        if self.aliases is None:
            if self.version is None:
                return {}
            self.aliases = registry_for(self.config).aliases(self.version.name)
        return self.aliases

    # -- identity -----------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.version.name if self.version else self.package.path.name

    @property
    def label(self) -> str:
        return self.version.ref if self.version else str(self.package.path)

    @property
    def signature(self) -> Any:
        return self.package.signature

    @property
    def task(self) -> str:
        return str(self.signature.task)

    # -- data ---------------------------------------------------------------------
    @cached_property
    def holdout(self) -> tuple[pd.DataFrame, pd.Series]:
        X, y = self.package.holdout()
        if y is None:
            raise TestingError(
                f"the package {self.package.path} was made without labels for its held-out "
                "rows, so its quality cannot be measured",
                hint="pass the labels: package_model(model, X_valid, y_valid)",
            )
        return X, y.reset_index(drop=True)

    @cached_property
    def datasets(self) -> dict[str, pd.DataFrame]:
        """The dataset snapshots named in the package's lineage, by name (verified)."""
        store = DatasetStore(self.config.artifact_root, self.config.root)
        found: dict[str, pd.DataFrame] = {}
        for name, info in (self.package.lineage.get("datasets") or {}).items():
            ref = f"{name}@{info['version']}" if info.get("version") else name
            snap = store.get(ref)
            if info.get("sha256") and snap.digest != info["sha256"]:
                raise TestingError(
                    f"dataset {ref} has digest {snap.digest[:12]}…, but the model was trained "
                    f"on {str(info['sha256'])[:12]}…",
                    hint="test against the store the model was trained with",
                )
            found[name] = store.load(snap)
        if not found:
            raise TestingError(
                f"the lineage of {self.label} names no dataset snapshot",
                hint="data tests need a model trained by `shipml run` on a dataset",
            )
        return found

    @property
    def dataset(self) -> pd.DataFrame:
        """The (first) training dataset snapshot, as stored."""
        return next(iter(self.datasets.values()))

    @property
    def target(self) -> str:
        return self.config.model.target or str(self.package.label or "")

    @cached_property
    def train(self) -> tuple[pd.DataFrame, pd.Series]:
        """The training rows, rebuilt from the snapshot with the package's row hashes."""
        hashes = self.package.train_row_hashes()
        if hashes is None:
            raise TestingError(
                f"the package of {self.label} does not record its training rows",
                hint="pass them: package_model(model, X_valid, y_valid, train=X_train)",
            )
        df = self.dataset
        target = self.target
        stored = self.package.train_rows()
        if target not in df.columns and (stored is None or "label" not in stored.columns):
            raise TestingError(
                f"the label column {target!r} is not in the dataset "
                f"(columns: {', '.join(map(str, df.columns))})",
                hint="set [model] target in shipml.toml",
            )
        names = self.signature.names
        missing = [n for n in names if n not in df.columns]
        if missing:
            raise TestingError(
                f"the features {missing} are made by the pipeline, not read from the dataset, "
                "so the training rows cannot be rebuilt from it",
                hint="leave out the checks that need training rows (see docs/testing.md)",
            )
        stored = self.package.train_rows()
        has_labels = stored is not None and "label" in stored.columns
        frame = df if has_labels else df[df[target].notna()]
        X = model_input(frame[names].reset_index(drop=True))
        keys = row_hashes(X)
        keep = np.isin(keys, hashes)
        if not keep.any():
            raise TestingError(
                f"no row of the dataset matches the training rows of {self.label}",
                hint="the features are transformed in the pipeline; see docs/testing.md",
            )
        if has_labels:
            assert stored is not None
            label_of = dict(zip(stored["hash"].to_numpy(np.uint64), stored["label"], strict=True))
            y = pd.Series([label_of[k] for k in keys[keep]])
        else:  # labels as the dataset has them: only usable if the pipeline kept them
            y = frame[target].reset_index(drop=True)[keep].reset_index(drop=True)
            classes = set(map(str, self.signature.classes))
            if self.task == "classification" and not set(map(str, y.unique())) <= classes:
                raise TestingError(
                    f"the dataset's {target!r} values are not the model's classes "
                    f"({sorted(classes)[:5]}): the pipeline transforms the label",
                    hint="record the training labels: package_model(..., train=X_train, "
                    "train_labels=y_train)",
                )
        return X[keep].reset_index(drop=True), y.reset_index(drop=True)

    # -- predictions ----------------------------------------------------------------
    @cached_property
    def predictor(self) -> Predictor:
        """The serving path's predictor (ONNX, or skops with the configured trusted types)."""
        return Predictor(
            self.package,
            name=self.name,
            version=self.version.version if self.version else "1",
            trusted_types=self.config.model.trusted_types,
        )

    def rows(self, X: pd.DataFrame) -> Rows:
        """Rows in the model convention as the server hands them to the model."""
        cols = {
            f.name: X[f.name].to_numpy(dtype=object if f.type == "string" else np.float32)
            for f in self.signature.features
        }
        return Rows(len(X), columns=cols)

    def predict(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
        """Labels and probabilities through the serving path (``X`` in the model
        convention, as ``model_input`` makes it)."""
        out = self.predictor.run(self.predictor.feeds(self.rows(X)))
        proba = None if out.probabilities is None else np.asarray(out.probabilities)
        return np.asarray(out.labels), proba

    @cached_property
    def holdout_features(self) -> pd.DataFrame:
        """The held-out features alone (checks that need no labels use these)."""
        return self.package.holdout()[0]

    @cached_property
    def holdout_predictions(self) -> tuple[np.ndarray, np.ndarray | None]:
        return self.predict(self.holdout_features)

    def results_dir(self, output: str | None = None) -> Path:
        return self.config.path(output) if output else self.config.tests_output
