"""The house rules of the source tree, checked so that they stay true (issue 18).

- no function or method over 60 lines (``end_lineno - lineno + 1`` of the ``def``,
  decorators excluded);
- no module over 400 lines unless its docstring gives the reason, in a sentence that
  says "400 lines" (for example "Over 400 lines because ...");
- at most 10 ``# fmt: skip`` in ``src`` and ``tests``.

Files that are templates rather than Python (``string.Template`` sources under
``templates/``) do not parse and are not modules of shipml; they are skipped.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src" / "shipml"
MAX_FUNCTION = 60
MAX_MODULE = 400
MAX_FMT_SKIP = 10


def _modules() -> list[tuple[Path, str, ast.Module]]:
    found = []
    for path in sorted(SOURCE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        try:
            tree = ast.parse(text, filename=str(path))
        except SyntaxError:
            assert "templates" in path.relative_to(SOURCE).parts, f"{path} does not parse"
            continue
        found.append((path, text, tree))
    return found


def test_the_walk_sees_the_package() -> None:
    names = {path.relative_to(SOURCE).as_posix() for path, _, _ in _modules()}
    assert {"cli/__init__.py", "serving/app.py", "tracking/worker.py"} <= names


def test_no_function_over_60_lines() -> None:
    long = []
    for path, _, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                assert node.end_lineno is not None
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} {lines}")
    assert not long, "functions over 60 lines:\n" + "\n".join(long)


def test_no_module_over_400_lines_without_a_reason() -> None:
    long = []
    for path, text, tree in _modules():
        lines = len(text.splitlines())
        reason = "400 lines" in (ast.get_docstring(tree) or "")
        if lines > MAX_MODULE and not reason:
            long.append(f"{path.relative_to(ROOT)} {lines}")
    assert not long, "modules over 400 lines with no reason in their docstring:\n" + "\n".join(long)


def test_fmt_skip_is_rare() -> None:
    marker = "# fmt: " + "skip"
    count = sum(
        path.read_text(encoding="utf-8").count(marker)
        for folder in (ROOT / "src", ROOT / "tests")
        for path in folder.rglob("*.py")
    )
    assert count <= MAX_FMT_SKIP, f"{count} '{marker}' in the tree (at most {MAX_FMT_SKIP})"
