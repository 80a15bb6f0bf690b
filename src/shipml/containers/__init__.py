"""Container images of a project: serve, train, test, data and notebook; the engine that
builds and runs them (podman, docker or buildah); base images made without a registry."""

from shipml.containers.base import BaseImage, build_base
from shipml.containers.container import run_in_container, run_notebook, store_mounts
from shipml.containers.containerfile import KINDS
from shipml.containers.engine import Engine, ImageInfo, find_engine
from shipml.containers.image import BuiltImage, build_image, image_repository

__all__ = [
    "KINDS",
    "BaseImage",
    "BuiltImage",
    "Engine",
    "ImageInfo",
    "build_base",
    "build_image",
    "find_engine",
    "image_repository",
    "run_in_container",
    "run_notebook",
    "store_mounts",
]
