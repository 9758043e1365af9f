"""Model images: render a build context for a model package (:mod:`.context`), resolve its wheels on the host
(:mod:`.wheelhouse`) and build it with the Docker engine (:mod:`.builder`).

The docker SDK is imported only when an image is built or looked up, so importing this package is cheap.
"""

from __future__ import annotations

from .context import BuildContext, default_base_image, render_context, sanitize_name, sanitize_tag, sanitize_version

__all__ = [
    "BuildContext",
    "ImageInfo",
    "build_image",
    "default_base_image",
    "find_image",
    "render_context",
    "sanitize_name",
    "sanitize_tag",
    "sanitize_version",
]


def __getattr__(name: str):
    # builder imports nothing heavy at module level either, but keep the import lazy for symmetry with docker.
    if name in ("ImageInfo", "build_image", "find_image", "list_images", "remove_image"):
        from . import builder

        return getattr(builder, name)
    raise AttributeError(name)
