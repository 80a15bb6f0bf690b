"""The stages that carry a model to production, each a list of `shipml` commands.

The generated CI workflows and `shipml ci run` read the same list, so what CI does can
be tried on a laptop. Only the deploy target differs: ``[ci] target`` (kubernetes) in
CI, ``[ci] local_target`` (podman) locally.

    check           lint and unit tests of the project's code
    pipeline        run the pipeline; the new model becomes the challenger
    model-tests     the test suites on the challenger (`shipml test`)
    report          the challenger's model card and its comparison with the champion, in
                    the job summary and as an artifact (what a reviewer reads on a PR)
    images          serve, test and train images (`shipml build`)
    deploy-staging  staging, the challenger in shadow behind the gateway
    analysis        the gateway's online comparison of champion and challenger
    promote         manual approval: the challenger becomes the champion in production
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from shipml.config import ProjectConfig
from shipml.errors import CIError

TARGETS = ("podman", "kubernetes")


@dataclass(frozen=True)
class Stage:
    name: str
    title: str
    commands: list[list[str]]  # argv after `shipml`
    manual: bool = False  # needs a person's approval
    deploys: bool = False  # talks to a cluster (needs its credentials in CI)
    artifacts: tuple[str, ...] = ()  # files the CI job keeps (uploaded)

    def shell(self) -> list[str]:
        return [shlex.join(["shipml", *argv]) for argv in self.commands]


def stages(config: ProjectConfig, target: str) -> list[Stage]:
    """The stages in order, deploying to ``target`` (podman or kubernetes)."""
    if target not in TARGETS:
        raise CIError(f"unknown deploy target {target!r}", hint=f"use {' or '.join(TARGETS)}")
    model = config.model_name
    challenger = f"{model}@challenger"
    staging = ["deploy", "apply", "--env", "staging", "--target", target]
    prod = ["deploy", "apply", "--env", "prod", "--target", target]
    return [
        Stage("check", "lint and unit tests", [["ci", "check"]]),
        Stage("pipeline", "pipeline run", [["run", "--alias", "challenger"]]),
        Stage("model-tests", "model tests", [["test", challenger]]),
        Stage(
            "report",
            "model card and comparison with the champion",
            [
                ["report", challenger, "-o", "results/model-card.html", "--summary"],
                [
                    "compare",
                    f"{model}@champion",
                    challenger,
                    "--html",
                    "results/compare.html",
                    "--summary",
                    "--skip-missing",  # the first run has no champion yet
                ],
            ],
            artifacts=("results/model-card.html", "results/compare.html"),
        ),
        Stage(
            "images",
            "build images",
            [["build", "serve", challenger], ["build", "test"], ["build", "train"]],
        ),
        Stage(
            "deploy-staging",
            "deploy to staging with the challenger in shadow",
            [staging],
            deploys=True,
        ),
        Stage(
            "analysis",
            "analysis of the shadow traffic",
            [["rollout", "status", "--gateway", config.ci.staging_gateway]],
            deploys=True,
        ),
        Stage(
            "promote",
            "promote to production (manual approval)",
            [["promote", challenger], prod],
            manual=True,
            deploys=True,
        ),
    ]
