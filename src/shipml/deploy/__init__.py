"""Kubernetes manifests for a project: a kustomize base and an overlay per environment,
validated against the Kubernetes schema, applied with podman or kubectl."""

from shipml.deploy.plan import ENVS, Plan, Variant, make_plan
from shipml.deploy.render import Rendered, render

__all__ = ["ENVS", "Plan", "Rendered", "Variant", "make_plan", "render"]
