"""A session: one workspace, the model being worked on and its dataset, shared by the panels of the app.

Pure logic (no widgets): panels call these functions, notebooks may call them directly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..data.generate import ShapesConfig
from ..errors import Cancelled, ConfigError, ModelLoadError
from ..progress import ProgressFn, emit
from ..store.workspace import DEFAULT_ROOT, Workspace

DEMO_DATA_CHOICE = "demo"


@dataclass
class Session:
    """What the panels share: the workspace, the current model variant and the data YAML it is measured on."""

    workspace: Workspace
    model_id: int | None = None
    data_yaml: Path | None = None
    imgsz: int = 320  # the model's training image size: accuracy is measured there
    listeners: list[Callable[[Session], None]] = field(default_factory=list, repr=False)

    @classmethod
    def open(cls, root: Path | str = DEFAULT_ROOT) -> Session:
        """A session over the workspace at `root`; picks up its latest source model and dataset if any."""
        session = cls(Workspace(root))
        sources = [v for v in session.workspace.ledger.rows("variants") if v["step"] == "source"]
        if sources:
            session.model_id = sources[-1]["id"]
            yamls = sorted(session.workspace.datasets.glob("*/data.yaml"), key=lambda p: p.stat().st_mtime)
            session.data_yaml = yamls[-1] if yamls else None
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
            raise ConfigError("no model and dataset chosen yet", "open them in the 'Model & data' tab first "
                              "(or call open_model(session))")
        return self.model_id, self.data_yaml


@dataclass(frozen=True)
class ModelChoice:
    """A model spec ('demo', 'student', a .pt path) and a dataset ('demo' or a data YAML path)."""

    model: str = "demo"
    data: str = DEMO_DATA_CHOICE
    shapes: ShapesConfig = ShapesConfig(seed=0, train=800, val=200, imgsz=320)  # used when data is 'demo'

    def __post_init__(self):
        if not str(self.model).strip():
            raise ConfigError("no model given", "use 'demo', 'student' or the path of a .pt file")
        if self.data != DEMO_DATA_CHOICE and not Path(self.data).expanduser().is_file():
            raise ConfigError(f"data YAML {self.data} does not exist", "use 'demo' or the path of a data YAML file")


def open_model(session: Session, choice: ModelChoice = ModelChoice(), *,
               progress: ProgressFn | None = None) -> int:
    """Load and check the model, generate or check the dataset, record the model as a source variant."""
    from ..data.checks import check_dataset
    from ..data.generate import generate_shapes
    from ..models.sources import load_model, resolve, student_weights

    spec = str(student_weights()) if choice.model == "student" else choice.model
    emit(progress, "model", 0, 2, f"loading {choice.model}")
    source = resolve(spec)
    model = load_model(spec)
    if not model.ckpt_path and not str(source.ref).endswith(".pt"):
        raise ModelLoadError(f"{choice.model} is not a trained .pt checkpoint",
                             "the workbench optimizes .pt models; export variants from there")
    if choice.data == DEMO_DATA_CHOICE:
        emit(progress, "dataset", 0, 1, choice.shapes.name)
        data_yaml = generate_shapes(session.workspace.datasets, choice.shapes, progress=progress).data_yaml
    else:
        data_yaml = Path(choice.data).expanduser().resolve()
    check_dataset(data_yaml, splits=("val",), model_names=model.names)
    imgsz = int((model.ckpt or {}).get("train_args", {}).get("imgsz", 320))
    variant_id = session.workspace.add_artifact(Path(model.ckpt_path or source.ref), Path(source.ref).name,
                                                step="source", params={"source": choice.model,
                                                                       "kind": source.kind.value}, format="pt")
    session.model_id, session.data_yaml, session.imgsz = variant_id, data_yaml, imgsz
    emit(progress, "model", 2, 2, f"variant {variant_id}")
    session.changed()
    return variant_id


def variant_choices(workspace: Workspace, *, formats: tuple[str, ...] | None = None) -> list[tuple[str, int]]:
    """(label, id) of recorded variants, newest first; `formats` keeps e.g. only ('pytorch',)."""
    choices = []
    for v in reversed(workspace.ledger.rows("variants")):
        if formats and _format(v) not in formats:
            continue
        choices.append((f"#{v['id']} {v['name']} ({v['step']}, {v['format']})", int(v["id"])))
    return choices


def _format(variant: dict) -> str:
    return "pytorch" if variant["format"] in ("pt", "pytorch") else str(variant["format"])


@dataclass(frozen=True)
class MeasureRequest:
    """What to measure on each chosen variant; `precision` is the OpenVINO hint (None: its default)."""

    latency: bool = True
    accuracy: bool = True
    parity: bool = False
    imgsz: int = 640  # latency input size (a static export is timed at its own size)
    accuracy_imgsz: int | None = None  # None: the model's training imgsz
    seconds: float = 2.0
    threads: int | None = None
    precision: str | None = "f32"
    parity_images: int = 20
    stage_images: int = 8  # real val images for the decode / preprocess / inference / postprocess split (0: none)

    def __post_init__(self):
        if not (self.latency or self.accuracy or self.parity):
            raise ConfigError("nothing to measure", "tick latency, accuracy or parity")
        if self.imgsz < 32 or self.imgsz % 32:
            raise ConfigError(f"imgsz must be a multiple of 32, got {self.imgsz}", "use e.g. 320 or 640")
        if self.seconds <= 0:
            raise ConfigError(f"seconds must be > 0, got {self.seconds}", "use e.g. 2")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be >= 1, got {self.threads}", "leave it empty for every core")


def measure_variants(session: Session, variant_ids: list[int], request: MeasureRequest = MeasureRequest(), *,
                     progress: ProgressFn | None = None) -> list[int]:
    """Latency, accuracy and parity of each variant as `request` asks; returns the measurement ids.

    Cancelled part-way (through `progress`), it removes the measurements it had already recorded.
    """
    if not variant_ids:
        raise ConfigError("no variant chosen", "pick one or more variants to measure")
    _, data_yaml = session.require()
    ids: list[int] = []
    try:
        _measure_each(session, variant_ids, request, data_yaml, ids, progress)
    except Cancelled:
        session.workspace.ledger.remove_measurements(ids)  # a cancelled run leaves the ledger as it was
        raise
    emit(progress, "measure", len(variant_ids), len(variant_ids), f"{len(ids)} measurements")
    session.changed()
    return ids


def _measure_each(session: Session, variant_ids: list[int], request: MeasureRequest, data_yaml: Path,
                  ids: list[int], progress: ProgressFn | None) -> None:
    from ..data.checks import list_images
    from ..measure.accuracy import AccuracyConfig
    from ..measure.latency import LatencyConfig
    from ..measure.measure import check_parity, evaluate_variant, measure_latency
    from ..measure.parity import ParityConfig
    from ..models.runners import RuntimeOptions, runtime_for
    from ..optimize.recipes import variant_imgsz

    for n, variant_id in enumerate(variant_ids):
        emit(progress, "measure", n, len(variant_ids), f"variant {variant_id}")
        path = session.workspace.artifact_path(variant_id)
        openvino = runtime_for(path) == "openvino"
        options = RuntimeOptions(threads=request.threads, precision=request.precision if openvino else None)
        static = variant_imgsz(session.workspace, variant_id)
        if request.latency:
            images = list_images(data_yaml, "val")[: request.stage_images] if request.stage_images else None
            ids.append(measure_latency(session.workspace, variant_id, options, imgsz=static or request.imgsz,
                                       config=LatencyConfig(min_time_s=request.seconds), images=images,
                                       progress=progress))
        if request.accuracy:
            config = AccuracyConfig(imgsz=static or request.accuracy_imgsz or session.imgsz)
            ids.append(evaluate_variant(session.workspace, variant_id, data_yaml, config, options, progress=progress))
        lineage = session.workspace.ledger.lineage(variant_id)
        if request.parity and len(lineage) > 1:
            images = list_images(data_yaml, "val")[: request.parity_images]
            config = ParityConfig(imgsz=static or request.imgsz, images=len(images))
            ids.append(check_parity(session.workspace, variant_id, images, config, progress=progress))
