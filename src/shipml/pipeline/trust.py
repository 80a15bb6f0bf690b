"""Which types a cached skops output may hold when shipml loads it.

A skops file names the types it holds, and loading it constructs them: a type whose
construction runs code runs that code. The cache folder and the artifact store can be
written by others than the user (a shared disk, a bucket), so the types a stored entry
lists are never what shipml trusts. A cached skops output loads only if every type in it
is one of:

- a type skops trusts by default (one ``skops.io.get_untrusted_types`` does not report);
- a type listed in the project's configuration, ``[model] trusted_types``;
- a class defined in the project's own code (a module whose file lies under the project
  root, outside ``.venv``, ``.shipml`` and the cache folder): code shipml runs anyway.

Deciding needs no import: a module not imported yet is found on ``sys.path`` and its
source read, and the name must be a class it defines (not a name it imports, which could
be anything). Any other type is refused: the local cache treats the entry as a miss, the
exchange of a Kubeflow step raises ``UnsafeModelError``.
"""

from __future__ import annotations

import ast
import inspect
import sys
from collections.abc import Iterable
from importlib.machinery import PathFinder
from pathlib import Path

from shipml.errors import UnsafeModelError
from shipml.pipeline.fingerprint import Fingerprinter

HINT = (
    "if you trust them, list them in shipml.toml under [model] trusted_types (types "
    "skops trusts and classes of the project's own modules are trusted already)"
)


class SkopsTrust:
    """The types a cached skops output may hold: skops' defaults, ``trusted_types`` and
    classes defined under ``root`` (none when ``root`` is None), except in ``exclude``."""

    def __init__(
        self,
        trusted_types: Iterable[str] = (),
        root: Path | None = None,
        exclude: Iterable[Path] = (),
    ) -> None:
        self.trusted = frozenset(trusted_types)
        self.project = Fingerprinter(root) if root is not None else None
        self.exclude = tuple(p.resolve() for p in exclude)
        self._verdicts: dict[str, bool] = {}

    def check(self, data: bytes, what: str) -> list[str]:
        """The types to pass to ``skops.io.loads`` for ``data``: those it reports as
        untrusted, once each one is allowed here; else an ``UnsafeModelError`` naming
        ``what`` and the refused types. A file skops cannot read is refused too."""
        import skops.io as sio

        try:
            untrusted = list(sio.get_untrusted_types(data=data))
        except Exception as exc:  # not a skops file: a zip/JSON error of any kind
            raise UnsafeModelError(
                f"{what} is not a readable skops file ({type(exc).__name__})",
                hint="run the step that wrote it again (or run with --no-cache)",
            ) from exc
        refused = [t for t in untrusted if not self.allowed(t)]
        if refused:
            raise UnsafeModelError(
                f"{what} holds types that are not trusted: {', '.join(refused)}", hint=HINT
            )
        return untrusted

    def allowed(self, name: str) -> bool:
        if name in self.trusted:
            return True
        if name not in self._verdicts:
            self._verdicts[name] = self._project_class(name)
        return self._verdicts[name]

    def _project_class(self, name: str) -> bool:
        """``name`` (``module.Class``, as skops writes it) is a class defined in a project
        file (found without importing anything)."""
        module, _, attr = name.rpartition(".")
        if self.project is None or not module or not attr.isidentifier():
            return False
        file = _module_file(module)
        if file is None or not self.project.is_project_file(file):
            return False
        path = Path(file).resolve()
        if any(path.is_relative_to(p) for p in self.exclude):
            return False
        loaded = sys.modules.get(module)
        if loaded is not None:
            obj = getattr(loaded, attr, None)
            return (
                inspect.isclass(obj)
                and obj.__module__ == module
                and obj.__qualname__ == attr
                and _defines_class(path, attr)
            )
        return _defines_class(path, attr)


def _module_file(module: str) -> str | None:
    """The source file of ``module``: the imported module's, or the one the import system
    would find on ``sys.path`` (no package's ``__init__`` runs to find it)."""
    loaded = sys.modules.get(module)
    if loaded is not None:
        return getattr(loaded, "__file__", None)
    search: list[str] | None = None
    spec = None
    parts = module.split(".")
    for i in range(1, len(parts) + 1):
        prefix = ".".join(parts[:i])
        parent = sys.modules.get(prefix)
        if parent is not None and i < len(parts):
            search = list(getattr(parent, "__path__", []) or [])
            continue
        try:
            spec = PathFinder.find_spec(prefix, search)
        except KeyError:
            # A namespace package inside one not imported (its path is computed from its
            # parent's, looked up in sys.modules): its folders are those of that name.
            spec, name = None, parts[i - 1]
            search = [str(Path(d) / name) for d in search or [] if (Path(d) / name).is_dir()]
            continue
        if spec is None:
            return None
        search = list(spec.submodule_search_locations or [])
    if spec is None or not spec.has_location or not spec.origin:
        return None
    return spec.origin if spec.origin.endswith(".py") else None


def _defines_class(path: Path, name: str) -> bool:
    """``path``'s source defines a top-level class ``name`` (and assigns that name nothing
    else at the top level)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
        return False
    defined = False
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            defined = True
        elif _binds(node, name):
            return False
    return defined


def _binds(node: ast.stmt, name: str) -> bool:
    """A top-level statement other than a class definition that binds ``name``."""
    if isinstance(node, ast.Import | ast.ImportFrom):
        return any((a.asname or a.name.split(".")[0]) == name for a in node.names)
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        return node.name == name
    targets: list[ast.expr] = []
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, ast.AnnAssign | ast.AugAssign):
        targets = [node.target]
    return any(isinstance(n, ast.Name) and n.id == name for t in targets for n in ast.walk(t))
