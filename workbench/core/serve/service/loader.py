"""Switching the served variant: the workspace variant a name or id stands for, and the loader the admin endpoint
(`PUT /v1/admin/model`) opens it with, its drift monitor built alongside when asked."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ...errors import ConfigError, WorkbenchError, WorkspaceError
from ...store.workspace import Workspace
from ..monitoring.reference import drift_data, drift_monitor, no_data_error


def resolve_variant(workspace: Workspace, given: str, *, unknown: type[ConfigError] = ConfigError) -> int:
    """The id of the variant `given` names: its id (digits) or its name in the ledger; it must have an artifact.

    Raises:
        ConfigError: a name shared by several variants, or a variant without an artifact file; `unknown` (a
            ConfigError) when there is no such variant (the admin endpoint answers it with 404).
    """
    text = str(given).strip()
    variants = workspace.ledger.variants()
    if text.isdigit():
        matches = [v for v in variants if v.id == int(text)]
    else:
        matches = [v for v in variants if v.name == text]
    fix = f"pass the id (or the name) of a variant recorded in {workspace.root} (with an artifact: an export)"
    if not matches:
        raise unknown(f"no variant {text!r} in the workspace {workspace.root}", fix)
    if len(matches) > 1:
        ids = ", ".join(str(v.id) for v in matches)
        raise ConfigError(f"the name {text!r} is that of several variants ({ids})", "pass the variant's id instead")
    variant = matches[0]
    if not variant.path or not (workspace.root / variant.path).exists():
        raise ConfigError(
            f"variant {variant.id} ({variant.name}) has no artifact file in {workspace.root}",
            "serve a variant that has one (an export), or export this one first",
        )
    return variant.id


def workspace_loader(
    workspace: Workspace,
    *,
    drift: bool = False,
    data: Path | str | None = None,
    window: int = 200,
    every: int = 1,
    **open_options,
) -> Callable:
    """A loader for the admin endpoint (`PUT /v1/admin/model`): `loader(variant, served_name)` opens the workspace
    variant named by `variant` (an id or a ledger name) under `served_name`, with its drift monitor when `drift`.

    Args:
        drift: build each loaded variant's drift monitor (against `data`, else the data the ledger recorded for it).
        data: the data YAML of every variant's reference; None: each variant's recorded one.
        window, every: as for `drift_monitor`.
        open_options: for `ServedModel.from_variant` (threads, workers, precision...).
    Returns:
        the loader; it returns an `admin.LoadedVariant` and raises ConfigError / WorkspaceError (problem and fix)
        for a variant it cannot serve, before anything is switched.
    Raises:
        ConfigError, DatasetError: `data` is not a data YAML with a readable val split.
    """
    if data is not None:
        from ...data.checks import list_images

        data = drift_data(workspace, None, data)  # checked now, not at the first switch
        list_images(data, "val")

    def load(variant: str, served_name: str):
        from .admin import LoadedVariant, VariantNotFound  # the serving extra's: imported when serving
        from .model import ServedModel

        variant_id = resolve_variant(workspace, variant, unknown=VariantNotFound)
        if drift and drift_data(workspace, variant_id, data) is None:  # refused before the model is opened
            raise no_data_error(variant_id)
        try:
            model = ServedModel.from_variant(workspace, variant_id, name=served_name, **open_options)
            monitor = (
                drift_monitor(workspace, variant_id, model, data=data, window=window, every=every) if drift else None
            )
        except (ConfigError, WorkspaceError):
            raise
        except WorkbenchError as exc:  # a model or dataset error: the admin endpoint answers these two kinds
            raise WorkspaceError(f"variant {variant_id} cannot be served: {exc.problem}", exc.fix) from exc
        except (OSError, RuntimeError) as exc:  # a runtime that cannot read the file
            raise WorkspaceError(
                f"variant {variant_id} could not be opened for serving: {exc}", "serve a variant whose export loads"
            ) from exc
        return LoadedVariant(model=model, variant_id=variant_id, drift=monitor)

    return load
