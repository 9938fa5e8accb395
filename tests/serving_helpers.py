"""What the serving tests share: the demo model exported into a fresh workspace, and argon2id at its cheapest."""

from __future__ import annotations

from pathlib import Path


def export_demo(root: Path, formats: tuple[str, ...] = ("openvino",), imgsz: int = 128) -> tuple:
    """A workspace under `root` with the demo model recorded and exported to each format at `imgsz`:
    (workspace, {format: variant id})."""
    from workbench.core.models.export import ExportConfig, export
    from workbench.core.models.sources import open_source, record_source
    from workbench.core.store.workspace import Workspace

    workspace = Workspace(Path(root) / "ws")
    base = record_source(workspace, open_source("demo"))
    return workspace, {f: export(workspace, base, ExportConfig(format=f, imgsz=imgsz)) for f in formats}


def cheap_hasher():
    """argon2id at its cheapest: a key check in about a millisecond (the stored hash names its parameters)."""
    from argon2 import PasswordHasher

    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
