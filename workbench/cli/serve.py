"""The serving commands of `workbench`: `serve` (a variant behind the inference service)."""

from __future__ import annotations


def add_serve_parsers(sub) -> None:
    """Register `workbench serve` (being written)."""
