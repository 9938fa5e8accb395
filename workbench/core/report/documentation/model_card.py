"""A model card (Mitchell et al., "Model Cards for Model Reporting") of one variant, drawn from the ledger alone.

Every figure is a ledger measurement, shown with the context it was measured in, its id and date; what the ledger
does not know is said to be unknown, never filled in. The markdown rounds (mAP to 4 decimals, milliseconds to 2);
`as_dict()` holds the values exactly as recorded.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import ConfigError
from ...store.atomic import staged
from ...store.ledger import now
from .card_facts import card_sections
from .card_markdown import card_markdown

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace


@dataclass(frozen=True)
class ModelCard:
    """What the ledger knows of one variant, in the sections of a model card; `markdown()` renders it."""

    details: dict
    lineage: list[dict]
    intended_use: dict
    metrics: dict
    evaluation: dict
    ethics: list[str]
    limitations: list[str]
    workspace: str
    generated_at: str = field(default_factory=now)

    def as_dict(self) -> dict:
        return asdict(self)

    def markdown(self) -> str:
        return card_markdown(self)

    def save(self, path: Path | str) -> Path:
        """Write the card atomically: JSON when `path` ends in .json, else markdown."""
        return write_card(self, path)


def model_card(workspace: Workspace | Path | str, variant_id: int) -> ModelCard:
    """The model card of a recorded variant, from the workspace's ledger.

    Args:
        workspace: a `Workspace` (or its folder).
        variant_id: the variant the card describes.
    Returns:
        the card: details and lineage, intended use, metrics with their context, evaluation data, drift alerts
        and diagnoses, ethical considerations and limitations.
    Raises:
        ConfigError: `variant_id` is not a whole number.
        WorkspaceError: the ledger has no such variant.
    """
    workspace = open_workspace(workspace)
    if isinstance(variant_id, bool) or not isinstance(variant_id, int):
        raise ConfigError(f"variant_id must be a whole number, got {variant_id!r}", "pass an id from the ledger")
    return ModelCard(**card_sections(workspace, variant_id), workspace=str(workspace.root))


def write_card(card, path: Path | str) -> Path:
    """Write a `ModelCard` or `DeploymentRecord` to `path` (staged, then renamed): JSON for .json, else markdown.

    Raises:
        ConfigError: `path` is a folder.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise ConfigError(f"{path} is a folder", "pass a file name, e.g. model-card.md")
    text = json.dumps(card.as_dict(), indent=2, default=str) + "\n" if path.suffix == ".json" else card.markdown()
    with staged(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def open_workspace(workspace: Workspace):
    """A `Workspace` as given, or opened from its folder."""
    if isinstance(workspace, str | os.PathLike):
        from ...store.workspace import Workspace

        return Workspace(workspace)
    return workspace
