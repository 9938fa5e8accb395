"""A session: one workspace, the model being worked on and its dataset, shared by the panels of the app.

Pure logic (no widgets): panels call these functions, notebooks may call them directly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..data.generate import ShapesConfig
from ..errors import ConfigError
from ..measure.plan import MeasurePlan
from ..progress import ProgressFn, emit
from ..store.workspace import Workspace

DEMO_DATA_CHOICE = "demo"


@dataclass
class Session:
    """What the panels share: the workspace, the current model variant and the data YAML it is measured on."""

    workspace: Workspace
    model_id: int | None = None
    data_yaml: Path | None = None
    imgsz: int = 640  # the current model's training image size: the default of every size in the panels
    listeners: list[Callable[[Session], None]] = field(default_factory=list, repr=False)

    @classmethod
    def open(cls, root: Path | str | None = None) -> Session:
        """A session over the workspace at `root` (None: the default workspace); picks up its latest source model
        and its newest generated dataset, if any."""
        session = cls(Workspace(root))
        sources = session.workspace.ledger.variants(step="source", newest_first=True)
        if sources:
            latest = sources[0]
            session.model_id = latest.id
            session.imgsz = int(latest.params.get("train_imgsz") or session.imgsz)
            session.data_yaml = _newest_dataset(session.workspace)
        return session

    def on_change(self, listener: Callable[[Session], None]) -> None:
        """Call `listener(session)` whenever a step adds variants or the model or dataset changes."""
        self.listeners.append(listener)

    def changed(self) -> None:
        for listener in list(self.listeners):
            listener(self)

    def require(self) -> tuple[int, Path]:
        """The current model and data YAML, or an error saying to pick them first."""
        if self.model_id is None or self.data_yaml is None:
            raise ConfigError(
                "no model and dataset chosen yet",
                "open them in the 'Model & data' tab first (or call open_model(session))",
            )
        return self.model_id, self.data_yaml


def _newest_dataset(workspace: Workspace) -> Path | None:
    yamls = sorted(workspace.datasets.glob("*/data.yaml"), key=lambda p: p.stat().st_mtime)
    return yamls[-1] if yamls else None


@dataclass(frozen=True)
class ModelChoice:
    """A model spec ('demo', 'student', 'searched', a .pt path) and a dataset ('demo' or a data YAML path)."""

    model: str = "demo"
    data: str = DEMO_DATA_CHOICE
    shapes: ShapesConfig = ShapesConfig()  # what is generated when data is 'demo'
    trust: bool = False  # the user checked this .pt: load it even if its pickle names more than model classes

    def __post_init__(self):
        if not str(self.model).strip():
            raise ConfigError("no model given", "use 'demo', 'student', 'searched' or the path of a .pt file")
        if self.data != DEMO_DATA_CHOICE and not Path(self.data).expanduser().is_file():
            raise ConfigError(f"data YAML {self.data} does not exist", "use 'demo' or the path of a data YAML file")


def open_model(session: Session, choice: ModelChoice = ModelChoice(), *, progress: ProgressFn | None = None) -> int:
    """Load and check the model, generate or check the dataset, record the model as a source variant."""
    from ..data.generate import check_fits_shapes, generate_shapes
    from ..models.sources import open_source, record_source

    emit(progress, "model", 0, 2, f"loading {choice.model}")
    given = None if choice.data == DEMO_DATA_CHOICE else Path(choice.data).expanduser().resolve()
    source = open_source(
        choice.model, data_yaml=given, trust=choice.trust
    )  # checks model and data before anything is written
    if given is None:
        check_fits_shapes(source.names, choice.model)
        emit(progress, "dataset", 0, 1, choice.shapes.name)
        data_yaml = generate_shapes(session.workspace.datasets, choice.shapes, progress=progress).data_yaml
    else:
        data_yaml = given
    variant_id = record_source(session.workspace, source)
    session.model_id, session.data_yaml, session.imgsz = variant_id, data_yaml, source.imgsz
    emit(progress, "model", 2, 2, f"variant {variant_id}")
    session.changed()
    return variant_id


def variant_choices(workspace: Workspace, *, formats: tuple[str, ...] | None = None) -> list[tuple[str, int]]:
    """(label, id) of recorded variants, newest first; `formats` keeps e.g. only ('pytorch',)."""
    return [
        (f"#{v.id} {v.name} ({v.step}, {v.format})", v.id)
        for v in workspace.ledger.variants(newest_first=True)
        if not formats or (v.format and v.format.value in formats)
    ]


def measure_variants(
    session: Session, variant_ids: list[int], plan: MeasurePlan = MeasurePlan(), *, progress: ProgressFn | None = None
) -> list[int]:
    """Measure each variant with `plan` on the session's dataset; returns the measurement ids.

    Cancelled part-way (through `progress`), it removes the measurements it had already recorded.
    """
    from ..errors import Cancelled
    from .measuring import measure

    if not variant_ids:
        raise ConfigError("no variant chosen", "pick one or more variants to measure")
    _, data_yaml = session.require()
    ids: list[int] = []
    try:
        for n, variant_id in enumerate(variant_ids):
            emit(progress, "measure variants", n, len(variant_ids), f"variant {variant_id}")
            ids += measure(session.workspace, variant_id, plan, data_yaml, progress=progress)
    except Cancelled:
        session.workspace.ledger.remove_measurements(ids)  # a cancelled run leaves the ledger as it was
        raise
    emit(progress, "measure variants", len(variant_ids), len(variant_ids), f"{len(ids)} measurements")
    session.changed()
    return ids
