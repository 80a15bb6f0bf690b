"""``shipml run``: the pipeline as one tracked run, then ``--alias`` on the version it
registered — a protected alias through the promotion gates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shipml.config import ProjectConfig
from shipml.errors import GateFailed
from shipml.pipeline import RunResult, run_pipeline
from shipml.project.promotion import Promotion, promote

if TYPE_CHECKING:
    from shipml.pipeline.display import Reporter


@dataclass
class ProjectRun:
    """The run, and for a protected ``--alias`` the promotion (or why it was refused:
    ``refused`` is raised by the caller once it has shown the run)."""

    result: RunResult
    promotion: Promotion | None = None
    refused: GateFailed | None = None


def run(
    config: ProjectConfig,
    *,
    params: dict[str, Any] | None = None,
    use_cache: bool = True,
    register: bool = True,
    alias: str | None = None,
    reporter: Reporter | None = None,
    tracker: Any = None,
) -> ProjectRun:
    """Run the project's pipeline; point ``alias`` at the registered version. A protected
    alias (``[gates] protect``) moves only if the version passes the gates: a version
    just registered has no test results, so it normally stays where it was."""
    gated = alias is not None and alias in config.gates.protect
    result = run_pipeline(
        config,
        params=params,
        use_cache=use_cache,
        reporter=reporter,
        register=register,
        alias=None if gated else alias,
        tracker=tracker,
    )
    done = ProjectRun(result)
    if gated and alias is not None and result.model_version is not None:
        try:
            done.promotion = promote(config, result.model_version.ref, alias=alias, by="shipml run")
        except GateFailed as exc:
            done.refused = exc
    return done
