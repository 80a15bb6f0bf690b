"""The code fingerprint of a step: its source and the project code it depends on.

A step's cache key must change when any code it runs changes, including helper
modules of the project that it imports (ZenML's cache misses those). We follow
the names a step's code refers to:

- functions and classes defined in the same module: their source, recursively;
- project modules (files under the project root), or functions and classes
  defined in them: the whole file, plus every project module it imports,
  transitively (found by parsing its import statements).

Third-party code is not hashed (its versions are recorded in the environment).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import inspect
import re
import sys
import textwrap
import types
from pathlib import Path
from typing import Any

CONSTANT_TYPES = (str, bytes, int, float, bool, complex, tuple, list, dict, set, frozenset)
EXCLUDED_DIRS = (".venv", "venv", ".shipml", "site-packages", "node_modules", ".git")
# A repr that does not show an object's whole state: an address, or a cut ('...').
PARTIAL_REPR = re.compile(r"0x[0-9a-fA-F]{6,}|\.\.\.|…")


def _code_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


class Fingerprinter:
    """Fingerprints of steps in one project (file hashes are cached per instance)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._file_hash: dict[Path, str] = {}
        self._file_deps: dict[Path, set[Path]] = {}

    def is_project_file(self, file: str | None) -> bool:
        if not file:
            return False
        path = Path(file).resolve()
        try:
            rel = path.relative_to(self.root)
        except ValueError:
            return False
        return not any(part in EXCLUDED_DIRS for part in rel.parts)

    # -- files ----------------------------------------------------------------
    def _hash_file(self, path: Path) -> str:
        if path not in self._file_hash:
            self._file_hash[path] = hashlib.sha256(path.read_bytes()).hexdigest()
        return self._file_hash[path]

    def _imports_of(self, path: Path) -> set[Path]:
        """Project files imported by ``path`` (absolute and relative imports)."""
        if path not in self._file_deps:
            self._file_deps[path] = set()  # guards against import cycles
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                text = ""
            self._file_deps[path] = self._imports_in(text, path.parent)
        return self._file_deps[path]

    def _imports_in(self, source: str, package_dir: Path) -> set[Path]:
        """Project files imported by the import statements of ``source``."""
        deps: set[Path] = set()
        try:
            tree = ast.parse(source)
        except SyntaxError:
            return deps
        for node in ast.walk(tree):
            modules: list[tuple[str, int]] = []
            if isinstance(node, ast.Import):
                modules = [(a.name, 0) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                modules = [(base, node.level)]
                modules += [
                    (f"{base}.{a.name}" if base else a.name, node.level) for a in node.names
                ]
            for name, level in modules:
                found = self._find_module(name, level, package_dir)
                if found is not None:
                    deps.add(found)
        return deps

    def _find_module(self, name: str, level: int, package_dir: Path) -> Path | None:
        start = package_dir
        for _ in range(max(level - 1, 0)):
            start = start.parent
        bases = [start] if level else [self.root, *(Path(p) for p in sys.path if p)]
        parts = [p for p in name.split(".") if p]
        if not parts:
            return None
        for base in bases:
            candidate = base.joinpath(*parts)
            for file in (candidate.with_suffix(".py"), candidate / "__init__.py"):
                if file.is_file() and self.is_project_file(str(file)):
                    return file.resolve()
        return None

    def file_closure(self, path: Path) -> set[Path]:
        seen: set[Path] = set()
        todo = [path.resolve()]
        while todo:
            p = todo.pop()
            if p in seen:
                continue
            seen.add(p)
            todo.extend(self._imports_of(p) - seen)
        return seen

    # -- functions --------------------------------------------------------------
    def fingerprint(self, func: Any) -> tuple[str, list[str]]:
        """sha256 over the step's code and its project dependencies, and the files used."""
        sources: dict[str, str] = {}
        files: set[Path] = set()
        self._visit(func, sources, files, set())
        h = hashlib.sha256()
        if _spread(func):  # entries made when such a step was called wrongly are not reused
            h.update(b"call\0bound\0")
        for key in sorted(sources):
            h.update(key.encode() + b"\0" + sources[key].encode() + b"\0")
        for file in sorted(files):
            rel = file.relative_to(self.root).as_posix()
            h.update(rel.encode() + b"\0" + self._hash_file(file).encode() + b"\0")
        return h.hexdigest(), sorted(f.relative_to(self.root).as_posix() for f in files)

    def _visit(self, obj: Any, sources: dict[str, str], files: set[Path], seen: set[int]) -> None:
        func = getattr(obj, "func", obj)  # a Step wraps its function
        if id(func) in seen:
            return
        seen.add(id(func))
        key = f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', repr(func))}"
        try:
            sources[key] = textwrap.dedent(inspect.getsource(func))
        except (OSError, TypeError):
            sources[key] = repr(func)
        code = getattr(func, "__code__", None)
        if code is None:
            return
        # Imports inside the function body (``from features import build``) count too.
        home_dir = Path(code.co_filename).resolve().parent
        for dep in self._imports_in(sources[key], home_dir):
            files |= self.file_closure(dep)
        home = getattr(func, "__module__", None)
        glb = getattr(func, "__globals__", {})
        refs = {name: glb[name] for name in _code_names(code) if name in glb}
        # A closure's variables count as its module's names do: the k of a step made by
        # `make_step(k)`, the function a decorator wraps (``functools.wraps``).
        cells = getattr(func, "__closure__", None) or ()
        for name, cell in zip(code.co_freevars, cells, strict=False):
            try:
                refs[f"{key}.<closure>.{name}"] = cell.cell_contents
            except ValueError:  # a cell not filled yet
                continue
        for name in sorted(refs):
            self._refer(refs[name], name, home, Path(code.co_filename), sources, files, seen)

    def _refer(
        self,
        value: Any,
        name: str,
        home: str | None,
        home_file: Path,
        sources: dict[str, str],
        files: set[Path],
        seen: set[int],
    ) -> None:
        """A name the code refers to: a constant by value, code followed, another object by
        its repr (or its file)."""
        if isinstance(value, CONSTANT_TYPES) and not _partial_container(value):
            sources[f"{home}.{name}"] = stable_repr(value)  # module-level constants count too
        elif _is_code(value) and not isinstance(value, functools.partial):
            self._follow(value, home, sources, files, seen)
        else:
            self._object(value, f"{home}.{name}", home_file, sources, files)
            if isinstance(value, functools.partial):
                self._follow(value.func, home, sources, files, seen)

    def _object(
        self, value: Any, key: str, home_file: Path, sources: dict[str, str], files: set[Path]
    ) -> None:
        """A module-level object that is not code (a config instance, an array, a
        ``functools.partial``'s arguments): its repr where that shows all of it, otherwise
        the project file that made it, with what that file imports."""
        if isinstance(value, functools.partial):
            value = (value.args, value.keywords)
        try:
            text = repr(value)
        except Exception:  # a repr that fails is no description
            text = "..."
        if not PARTIAL_REPR.search(text):
            sources[key] = text
        elif self.is_project_file(str(home_file)):
            files |= self.file_closure(home_file)

    def _follow(
        self,
        value: Any,
        home: str | None,
        sources: dict[str, str],
        files: set[Path],
        seen: set[int],
    ) -> None:
        if isinstance(value, types.ModuleType):
            file = getattr(value, "__file__", None)
            if self.is_project_file(file):
                files |= self.file_closure(Path(str(file)))
                if hasattr(value, "__path__"):  # a package: `pkg.sub.f()` reaches submodules
                    for sub in sorted(Path(str(file)).parent.rglob("*.py")):
                        if self.is_project_file(str(sub)):
                            files |= self.file_closure(sub)
            return
        target = inspect.unwrap(getattr(value, "func", value))  # see through decorators
        module_name = getattr(target, "__module__", None)
        if not (inspect.isfunction(target) or inspect.isclass(target)) or module_name is None:
            return
        module = sys.modules.get(module_name)
        file = getattr(module, "__file__", None)
        if not self.is_project_file(file):
            return
        if module_name == home:
            if inspect.isfunction(target):
                self._visit(target, sources, files, seen)
            else:
                key = f"{module_name}.{target.__qualname__}"
                try:
                    sources[key] = inspect.getsource(target)
                except (OSError, TypeError):
                    sources[key] = repr(target)
                for member in vars(target).values():  # methods may call module helpers
                    func = getattr(member, "__func__", member)
                    if inspect.isfunction(func):
                        self._visit(func, sources, files, seen)
        else:
            files |= self.file_closure(Path(str(file)))


def _partial_container(value: Any) -> bool:
    """A list, tuple, dict or set whose repr does not show all of it: a function in it
    (``{'rf': make_rf}`` shows an address, a new key every run) or a long array (cut with
    ``...``: an edit in its middle kept the key). It counts as any other object does."""
    if not isinstance(value, tuple | list | dict | set | frozenset):
        return False
    try:
        return bool(PARTIAL_REPR.search(stable_repr(value)))
    except Exception:  # a repr that fails is no description
        return True


def stable_repr(value: Any) -> str:
    """``repr`` with sets in sorted order: a set of strings is shown in an order that
    changes from one process to the next (hash randomization), so a step that read
    ``LABELS = {"adelie", "gentoo"}`` had a new cache key every run."""
    if isinstance(value, set | frozenset):
        return f"{type(value).__name__}({{{', '.join(sorted(map(stable_repr, value)))}}})"
    if isinstance(value, list):
        return f"[{', '.join(map(stable_repr, value))}]"
    if isinstance(value, tuple):  # as repr shows it: (1,) and (1, 2)
        if len(value) == 1:
            return f"({stable_repr(value[0])},)"
        return f"({', '.join(map(stable_repr, value))})"
    if isinstance(value, dict):
        return f"{{{', '.join(f'{stable_repr(k)}: {stable_repr(v)}' for k, v in value.items())}}}"
    return repr(value)


def _spread(func: Any) -> bool:
    """Whether a step has ``*args``, ``**kwargs`` or positional-only parameters: its cache
    entries from before they were passed as such were made by a wrong call."""
    kinds = (
        inspect.Parameter.VAR_POSITIONAL,
        inspect.Parameter.VAR_KEYWORD,
        inspect.Parameter.POSITIONAL_ONLY,
    )
    try:
        params = inspect.signature(getattr(func, "func", func)).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.kind in kinds for p in params)


def _is_code(value: Any) -> bool:
    """A module, function, class or step (followed to its source), not a plain object."""
    target = inspect.unwrap(getattr(value, "func", value))
    return (
        isinstance(value, types.ModuleType)
        or inspect.isfunction(target)
        or (inspect.isclass(target))
    )
