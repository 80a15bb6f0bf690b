"""The one door through which a protected alias (``[gates] protect``) moves.

``Registry.set_alias`` refuses protected aliases. Only ``shipml.project.promotion`` —
the promotion function that checks the gates and writes the audit event first — may
import this module: an import-linter contract in pyproject.toml forbids every other
module to.
"""

from __future__ import annotations

from shipml.errors import RegistryError
from shipml.tracking.registry import Registry, VersionInfo


def move_protected_alias(registry: Registry, name: str, version: str, alias: str) -> VersionInfo:
    """Point ``alias`` (protected or not) of ``name`` at ``version``."""
    if not isinstance(registry, Registry):  # the worker's registry cannot do it
        raise RegistryError(
            f"a protected alias is moved through the project's registry, not {type(registry)}"
        )
    return registry._move_alias(name, version, alias)
