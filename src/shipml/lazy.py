"""Names of a package that load on first use (PEP 562), so that importing it stays quick.

``import shipml`` must not load pandas, pydantic or MLflow: `shipml run` starts its
tracking worker before anything heavy is loaded, and every command's ``--help`` is
quicker for it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_names(
    package: str, names: dict[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: each of ``names`` is imported from
    its module when first asked for, then kept in ``namespace`` (the package's globals).
    A module written ``module:attr`` gives its ``attr`` under the name."""

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, _, attr = names[name].partition(":")
        value = getattr(importlib.import_module(module), attr or name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(names))

    return __getattr__, __dir__
