"""The labels every model image and container carries, spelled once: images, deployments and the API read them.

Docker is the source of truth for what runs: these labels say which model version an image or a container
holds, so lookups ask the engine for them instead of keeping any state here.
"""

from __future__ import annotations

from typing import Mapping

__all__ = ["MODEL", "VERSION", "RUN_ID", "DIGEST", "STORE", "IMAGE", "BASE_IMAGE", "MANAGED", "label_version"]

MODEL = "pyml.model"  # the Docker-safe model name (images.context.sanitize_name)
VERSION = "pyml.version"  # the registered version, an integer written as text
RUN_ID = "pyml.run_id"  # the MLflow run the package was logged in
DIGEST = "pyml.digest"  # the package digest (serving.loader.package_digest)
STORE = "pyml.store"  # the model registry the version is in (tracking.store_id)
IMAGE = "pyml.image"  # on containers: the image tag they were started from
BASE_IMAGE = "pyml.base_image"  # on images: the base image they were built on
MANAGED = "pyml.managed"  # "true" on everything pyml_jupyter created


def label_version(labels: Mapping[str, str]) -> int:
    """The model version a set of labels names, as an ``int`` (0 when the label is missing or not a number)."""
    text = str(labels.get(VERSION) or "").strip()
    return int(text) if text.isdigit() else 0

