"""Loading a project's pipeline: its file imported afresh (with the project's own modules,
so edits take effect in a long-lived process) and the one ``@pipeline`` in it chosen."""

from __future__ import annotations

import importlib.util
import os
import sys
import traceback
from importlib.machinery import (
    BYTECODE_SUFFIXES,
    EXTENSION_SUFFIXES,
    SOURCE_SUFFIXES,
    ExtensionFileLoader,
    FileFinder,
    SourceFileLoader,
)
from pathlib import Path
from types import ModuleType
from typing import Any

from shipml.config import ProjectConfig
from shipml.errors import PipelineError, ShipmlError
from shipml.pipeline.step import Pipeline


class _SourceLoader(SourceFileLoader):
    """A project module compiled from its source, never from a ``.pyc``: a ``.pyc`` is
    matched to its source by the source's modification time in whole seconds and its
    size, so an edit saved within the second of the last import that kept the file's size
    (``n_estimators=200`` to ``300``, by a script or a quick hand) ran the old code, and
    the step cache, keyed by that code, handed back the old results. The project's few
    files compile in milliseconds; no ``.pyc`` is written for them."""

    def get_data(self, path: str) -> bytes:
        if path.endswith(tuple(BYTECODE_SUFFIXES)):
            raise OSError("a project module is compiled from its source")
        return super().get_data(path)

    def set_data(self, path: str, data: Any, *, _mode: int = 0o666) -> None:
        return None


_PROJECT_ROOTS: set[str] = set()


def _installed(real: str) -> bool:
    """A folder of installed packages (a virtual environment kept inside the project
    included): left to Python's own finder and its .pyc files."""
    prefixes = {os.path.realpath(p) + os.sep for p in (sys.prefix, sys.base_prefix)}
    return "site-packages" in real or "dist-packages" in real or real.startswith(tuple(prefixes))


def _project_finder(path: str) -> FileFinder:
    """sys.path_hooks: the folders of a loaded project (its root and its packages) are
    searched with ``_SourceLoader``; any other folder is left to Python's own finder."""
    real = os.path.realpath(path)
    if not _installed(real) and any(
        real == root or real.startswith(root + os.sep) for root in _PROJECT_ROOTS
    ):
        return FileFinder(
            path, (_SourceLoader, SOURCE_SUFFIXES), (ExtensionFileLoader, EXTENSION_SUFFIXES)
        )
    raise ImportError("not a project folder")


def _from_source(root: str) -> None:
    """From now on, import the project under ``root`` from its source (see
    ``_SourceLoader``): its folders' cached finders are dropped so the hook is asked."""
    _PROJECT_ROOTS.add(root)
    if _project_finder not in sys.path_hooks:
        sys.path_hooks.insert(0, _project_finder)
    for path in list(sys.path_importer_cache):
        real = os.path.realpath(path) if path else path
        if real == root or real.startswith(root + os.sep):
            del sys.path_importer_cache[path]


def load_module(config: ProjectConfig) -> ModuleType:
    """Import the project's pipeline file afresh (project modules are re-imported too,
    so edits to helpers take effect in a long-lived process)."""
    file = config.path(config.pipeline.file)
    if not file.is_file():
        raise PipelineError(
            f"pipeline file not found: {file}",
            hint="set [pipeline] file in shipml.toml to your pipeline module",
        )
    root = str(config.root)
    # The project's own top-level modules (features.py...): a module of that name
    # imported from another project earlier in this process must not stand in for it.
    own = {p.stem for p in config.root.glob("*.py")} | {
        p.parent.name for p in config.root.glob("*/__init__.py")
    }
    # Thousands of modules are loaded (MLflow alone brings ~2,000): compare resolved paths
    # only for files that can lie in the project, i.e. not in an installed package.
    for name, mod in list(sys.modules.items()):
        mod_file = getattr(mod, "__file__", None)
        if (
            mod_file
            and "site-packages" not in mod_file
            and not mod_file.startswith(sys.base_prefix)
            and (os.path.realpath(mod_file).startswith(root + "/") or name.partition(".")[0] in own)
        ):
            del sys.modules[name]
    if root not in sys.path:
        sys.path.insert(0, root)
    _from_source(os.path.realpath(root))
    name = file.stem
    spec = importlib.util.spec_from_file_location(name, file, loader=_SourceLoader(name, str(file)))
    if spec is None or spec.loader is None:
        raise PipelineError(f"cannot import {file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except ShipmlError:
        raise
    except Exception as exc:
        del sys.modules[name]
        if isinstance(exc, SyntaxError):  # raised by the compiler: no frame of the file
            reason, where = exc.msg, f"{Path(exc.filename or file).name}:{exc.lineno}"
        else:
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            reason, where = str(exc), f"{Path(frame.filename).name}:{frame.lineno}"
        raise PipelineError(
            f"importing {file.name} failed: {type(exc).__name__}: {reason} ({where})",
            hint="fix the error above; `shipml --debug run` shows the whole traceback",
        ) from exc
    return module


def load_pipeline(config: ProjectConfig) -> Pipeline:
    module = load_module(config)
    found = {p.name: p for p in vars(module).values() if isinstance(p, Pipeline)}
    wanted = config.pipeline.name
    if wanted:
        if wanted not in found:
            raise PipelineError(
                f"no pipeline named {wanted!r} in {config.pipeline.file} "
                f"(found: {', '.join(found) or 'none'})",
                hint="check [pipeline] name in shipml.toml",
            )
        return found[wanted]
    if len(found) != 1:
        raise PipelineError(
            f"{config.pipeline.file} defines {len(found)} pipelines "
            f"({', '.join(found) or 'none'}); shipml needs to know which one to run",
            hint="decorate one function with @shipml.pipeline, or set [pipeline] name",
        )
    return next(iter(found.values()))
