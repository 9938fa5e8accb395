"""The service's administration commands of `workbench`: `keys add|list|revoke` and `audit verify`."""

from __future__ import annotations


def add_admin_parsers(sub) -> None:
    """Register `workbench keys` and `workbench audit` (being written)."""
