"""A workspace: one folder with the ledger, the artifacts, generated datasets and reports of a study."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

from ..errors import WorkbenchError, WorkspaceError
from .atomic import SCRATCH_FOLDER, remove, sha256, size_bytes, staged, sweep_stale, tag, use_scratch_root
from .faults import check_folder_writable, os_fault
from .ledger import Ledger
from .records import Variant

DEFAULT_NAME = "workbench-runs"
WORKSPACE_VARIABLE = "WORKBENCH_WORKSPACE"  # `make demo`, `make lab` and `make app` set it, so they share one
LEDGER_NAME = "workbench.db"


def default_root() -> Path:
    """The workspace used when none is named: `$WORKBENCH_WORKSPACE` if set, else ./workbench-runs."""
    return Path(os.environ.get(WORKSPACE_VARIABLE) or DEFAULT_NAME)


def default_workspace() -> Path:
    """The folder `Workspace()` opens when given none (absolute): `$WORKBENCH_WORKSPACE`, else ./workbench-runs."""
    return default_root().expanduser().resolve()


class Workspace:
    """Everything a study produces, under `root`: `workbench.db`, `artifacts/`, `datasets/`, `reports/`."""

    def __init__(self, root: Path | str | None = None):
        self.root = Path(root if root is not None else default_root()).expanduser().resolve()
        _check_writable(self.root)
        for sub in ("artifacts", "datasets", "reports"):
            (self.root / sub).mkdir(exist_ok=True)
        self.ledger = Ledger(self.root / LEDGER_NAME)
        self.swept = _sweep(self.root)
        use_scratch_root(self.root / SCRATCH_FOLDER)  # exports, training and validation stage their files here

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    @property
    def datasets(self) -> Path:
        return self.root / "datasets"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    def add_artifact(
        self,
        write: Callable[[Path], None] | Path | str,
        name: str,
        *,
        step: str,
        params: dict | None = None,
        parent_id: int | None = None,
        format: str | None = None,
        check: Callable[[Path], None] | None = None,
    ) -> int:
        """Store an artifact (staged, checked, renamed) and record it as a variant.

        Args:
            write: an existing file or folder to copy in, or a function that writes the artifact at the path
                it is given.
            name: file name of the artifact, e.g. 'yolo11n.pt'; its content hash is added to keep names unique.
            step, params, parent_id, format: the variant's lineage, recorded in the ledger.
            check: raises if the staged artifact is not usable; nothing is kept then.
        Returns:
            the variant id (an identical artifact from the same step and parent keeps its earlier id).
        Raises:
            WorkspaceError: a disk or permission fault (full disk, read-only artifacts/, ...) while writing,
                copying or moving the artifact; nothing of it is left in artifacts/ and nothing is recorded.
        """
        stem, suffix = _split_name(name)
        doing = f"writing {name} into the workspace" if callable(write) else f"copying {write} into the workspace"
        check_folder_writable(self.artifacts, doing)  # artifacts/ can be read-only under a writable root
        staging = self.artifacts / f".incoming-{tag()}{suffix}"
        try:
            with staged(staging, check=check) as tmp:  # removes its staging path on any error
                if callable(write):
                    write(tmp)
                elif Path(write).is_dir():
                    shutil.copytree(write, tmp)
                else:
                    shutil.copy2(write, tmp)
            digest = sha256(staging)
            final = self.artifacts / f"{stem}-{digest[:10]}{suffix}"
            if not final.exists():
                os.replace(staging, final)  # atomic: the final name holds a whole artifact or nothing
            size = size_bytes(final)
        except WorkbenchError:
            raise  # already says its cause (ModelNotFoundError is also an OSError)
        except OSError as exc:
            raise os_fault(exc, doing, self.artifacts) from exc
        finally:
            with suppress(OSError):  # never hide the error above
                remove(staging)
        return self.ledger.add_variant(
            final.name,
            step=step,
            params=params,
            parent_id=parent_id,
            format=format,
            path=str(final.relative_to(self.root)),
            sha256=digest,
            size_bytes=size,
        )

    def variant(self, variant_id: int) -> Variant:
        """One recorded variant (raises WorkspaceError when there is none with that id)."""
        return self.ledger.variant(variant_id)

    def lineage(self, variant_id: int) -> list[Variant]:
        """The variant and its ancestors, root last."""
        return self.ledger.lineage(variant_id)

    def artifact_path(self, variant_id: int) -> Path:
        """Absolute path of a variant's artifact."""
        variant = self.ledger.variant(variant_id)
        if not variant.path:
            raise WorkspaceError(f"variant {variant_id} has no artifact in {self.root}", "pick a variant with a file")
        return self.root / variant.path

    def variants(self):
        """Variants as a DataFrame: id, name, parent_id, step, params, format, path, sha256, size_bytes, ..."""
        import pandas as pd

        return pd.DataFrame([v.as_dict() for v in self.ledger.variants()], columns=list(Variant.__dataclass_fields__))

    def measurements(self, kind: str | None = None):
        """Measurements as a DataFrame with metrics and context spread into columns, joined to variant names."""
        import pandas as pd

        names = {v.id: v.name for v in self.ledger.variants()}
        flat = [
            {
                "id": m.id,
                "variant_id": m.variant_id,
                "variant": names.get(m.variant_id),
                **_scalars(m.metrics),
                **_scalars(m.context, "ctx_"),
                "kind": m.kind,  # after the metrics: a diagnosis's own "kind" (accuracy or speed) must not hide it
                "fingerprint_id": m.fingerprint_id,
                "created_at": m.created_at,
                "metrics": m.metrics,
                "context": m.context,
            }
            for m in self.ledger.measurements(kind=kind)
        ]
        return pd.DataFrame(flat)

    def fingerprints(self):
        import pandas as pd

        return pd.DataFrame(self.ledger.fingerprints())

    def export_csv(self, folder: Path | str | None = None) -> list[Path]:
        """Write variants.csv, measurements.csv and fingerprints.csv (nested fields as JSON text)."""
        import json

        folder = Path(folder) if folder else self.reports
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for table in ("variants", "measurements", "fingerprints"):
            frame = getattr(self, table)()
            for column in frame.columns:
                if frame[column].map(lambda v: isinstance(v, (dict, list))).any():
                    frame[column] = frame[column].map(lambda v: json.dumps(v, default=str))
            path = folder / f"{table}.csv"
            with staged(path) as tmp:
                frame.to_csv(tmp, index=False)
            written.append(path)
        return written


class StaleStagingWarning(UserWarning):
    """Files an interrupted run left in the workspace's staging areas were removed."""


def _sweep(root: Path) -> list[Path]:
    """Remove what interrupted runs left in the staging areas, and say so in one line."""
    import warnings

    removed = sweep_stale([root / "artifacts", root / "reports", root / SCRATCH_FOLDER])
    if removed:
        names = ", ".join(p.name for p in removed[:3]) + (" ..." if len(removed) > 3 else "")
        warnings.warn(
            f"removed {len(removed)} staging file(s) or folder(s) left in {root} by runs that were interrupted "
            f"({names})",
            StaleStagingWarning,
            stacklevel=3,
        )
    return removed


def _scalars(data: dict, prefix: str = "") -> dict:
    return {f"{prefix}{k}": v for k, v in data.items() if isinstance(v, (int, float, str, bool)) or v is None}


FOLDER_SUFFIXES = ("_openvino_model",)  # runtimes recognise these folders by how their names end


def _split_name(name: str) -> tuple[str, str]:
    for suffix in FOLDER_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)], suffix
    path = Path(name)
    return (path.stem, path.suffix) if path.suffix else (path.name, "")


def _check_writable(root: Path) -> None:
    """Create `root` if needed and prove it is writable, or raise WorkspaceError; leaves nothing behind."""
    existing = next((p for p in (root, *root.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise WorkspaceError(
            f"workspace {root} cannot be created: {existing} is a file",
            "choose a workspace folder whose parents are folders (--workspace DIR)",
        )
    created = not root.exists()
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".write-test-{uuid.uuid4().hex[:8]}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        if created and root.exists() and not any(root.iterdir()):
            root.rmdir()
        raise WorkspaceError(
            f"workspace {root} is not writable ({exc.strerror or exc})",
            os_fault(exc, f"writing to {root}", root).fix,  # full disk, permissions, read-only disk: each its fix
        ) from exc
