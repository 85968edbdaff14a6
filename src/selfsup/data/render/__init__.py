"""Rendering: scene specs (:mod:`selfsup.data.scene`, plain data) → pixels and labels → a dataset folder.

- :mod:`selfsup.data.render.blender`: the only module that imports ``bpy`` (in spawned workers only);
- :mod:`selfsup.data.render.jobs`: the worker pool, shards, resuming and assembly (``render_dataset``).
"""

from __future__ import annotations

from selfsup.data.render.jobs import measure_render_worker, render_dataset, renderer_hash

__all__ = ["measure_render_worker", "render_dataset", "renderer_hash"]
