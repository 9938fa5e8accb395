"""`make bench` / `workbench bench`: a model on every runtime at each imgsz (LiteRT fp32 and INT8 where the `litert`
extra is installed), checked against OpenVINO's benchmark_app and a bare timing loop, with the optimized rows beside
them; written to results.json and a markdown table.

Every row is measured through `measure()` with a plan of its own. A row whose two benchmark_app brackets (just
before and just after it) drift apart by more than `max_drift` is measured again, up to `retries` times: the
machine's speed moved under it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..data.generate import ShapesConfig
from ..environment import fingerprint
from ..errors import Cancelled, ConfigError, check_imgsz
from ..measure.plan import MeasurePlan
from ..models.export import ExportConfig, export
from ..models.sources import DEMO
from ..progress import ProgressFn, emit
from ..report.compare import comparison_table, measurement_columns
from ..report.tables import markdown_table
from ..services.measuring import measure
from .cross_check import bare_loop, benchmark_app, bracket, paired_ratio
from .end_to_end import end_to_end_markdown
from .estimator import estimator_markdown, estimator_summary
from .litert import KEYS as LITERT_KEYS
from .litert import litert_markdown, litert_rows, litert_summary
from .optimized import NAMES, Row, optimized_markdown, optimized_rows, summary
from .searched import KEY as SEARCHED_KEY
from .searched import searched_markdown, searched_summary
from .serving import serving_markdown

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace

# A record holds the comparison table's values of its row; what the bench sets itself (the hint it asked for,
# GFLOPs and the speed-up, under the name that says its baseline) is added per row, the cross-checks beside them.
RECORD_KEYS = measurement_columns(
    "technique", "precision_hint", "gflops", "gops_per_s", "throughput_fps", "speedup", "map_note", "map50_95_delta"
)
CROSS_CHECK_COLUMNS = [
    "bare_loop_ratio",
    "benchmark_app_ratio",
    "benchmark_app_ratio_internal",
    "benchmark_app_median_drift",
    "attempts",
]
TABLE_COLUMNS = [
    *measurement_columns(
        "technique", "precision_hint", "batch", "mean_ms", "stable", "spread", "runtime_internal_p50_ms",
        "call_overhead_ms", "gflops", "gops_per_s", "throughput_fps", "map50", "map_note", "map50_95_delta",
        renamed={"speedup": "speedup_vs_pytorch"},
    ),
    *CROSS_CHECK_COLUMNS,
]  # fmt: skip


@dataclass(frozen=True)
class BenchConfig:
    """What the bench measures and how long; every value is checked before any file is written."""

    model: str = DEMO
    data: str | None = None  # a data YAML; None: the generated shapes dataset
    shapes: ShapesConfig = ShapesConfig()
    imgsizes: tuple[int, ...] = (320, 640)
    threads: int = 2
    seconds: float = 5.0
    warmup_s: float = 1.0
    warmup_runs: int = 10
    min_runs: int = 50
    benchmark_app_seconds: int = 10
    bare_loop_runs: int = 100
    max_drift: float = 0.10
    retries: int = 2
    trust: bool = False  # load a .pt whose pickle names more than model classes (it may run code)
    serving: bool = True  # the serving section: HTTPS + key + audit against in process (needs the serve extra)

    def __post_init__(self):
        object.__setattr__(self, "imgsizes", tuple(check_imgsz(s) for s in self.imgsizes))
        if not self.imgsizes:
            raise ConfigError("no image size to bench", "pass e.g. --imgsz 320 640")
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1:
            raise ConfigError(f"threads must be a whole number >= 1, got {self.threads!r}", "use e.g. --threads 2")
        for name in ("benchmark_app_seconds", "bare_loop_runs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}", "use the default")
        if self.retries < 0 or not 0 < self.max_drift < 1:
            raise ConfigError("retries must be >= 0 and max_drift in (0, 1)", "use retries=2, max_drift=0.1")
        self.plan(None, 32)  # the timing values are checked by the plan itself

    def plan(self, precision: str | None, imgsz: int, *, latency: bool = True) -> MeasurePlan:
        """The plan of one row: OpenVINO as benchmark_app runs it (-hint none, one stream), fixed threads."""
        return MeasurePlan(
            latency=latency,
            accuracy=not latency,
            imgsz=(imgsz,),
            precisions=(precision,),
            threads=self.threads,
            hint="none",
            streams=1,
            seconds=self.seconds,
            warmup_s=self.warmup_s,
            warmup_runs=self.warmup_runs,
            min_runs=self.min_runs,
        )


def run_bench(out: Path | str, config: BenchConfig = BenchConfig(), *, progress: ProgressFn | None = None) -> dict:
    """Export, measure, cross-check and write `out/results.json` and `out/results.md`; returns the JSON."""
    from ..data.generate import check_fits_shapes, generate_shapes
    from ..models.sources import open_source, record_source
    from ..services.searched_model import record_searched, searched_available
    from ..services.shipped_models import record_student
    from ..store.workspace import Workspace

    given = Path(config.data).expanduser().resolve() if config.data else None
    source = open_source(
        config.model, data_yaml=given, trust=config.trust
    )  # model and data checked before anything is written
    if given is None:
        check_fits_shapes(source.names, config.model)
    out = Path(out)
    workspace = Workspace(out / "workspace")
    data_yaml = given or generate_shapes(workspace.datasets, config.shapes, progress=progress).data_yaml
    base = record_source(workspace, source)
    map_imgsz, sizes = source.imgsz, sorted(set(config.imgsizes) | {source.imgsz})
    rows = [row for imgsz in sizes for row in _reference_rows(workspace, base, data_yaml, imgsz, progress)]
    litert_skipped = []
    for imgsz in sizes:
        found, skipped = litert_rows(workspace, base, data_yaml, imgsz, progress)
        rows += found
        litert_skipped += [s for s in skipped if imgsz in config.imgsizes]
    student = record_student(workspace, base, progress).student if config.model == DEMO else None
    searched = record_searched(workspace, student, progress) if student and searched_available() else None
    rows += optimized_rows(workspace, base, student, data_yaml, sizes, progress, searched)
    measured = [r for r in rows if r.imgsz in config.imgsizes]
    checks = [
        _measure_row(workspace, row, config, index, len(measured), progress) for index, row in enumerate(measured)
    ]
    for row in rows:  # accuracy once per variant and precision, at the training imgsz
        if row.imgsz == map_imgsz:
            measure(
                workspace,
                row.variant_id,
                config.plan(row.precision, map_imgsz, latency=False),
                data_yaml,
                progress=progress,
            )
    records = _records(workspace, measured, checks, config)
    result = {
        "records": records,
        "fingerprint": fingerprint(),
        "config": {
            **asdict(config),
            "batch": 1,
            "map_imgsz": map_imgsz,
            "data_yaml": str(data_yaml),
            "benchmark_app": f"-hint none -nstreams 1 -nthreads {config.threads} -api sync -t "
            f"{config.benchmark_app_seconds}",
        },
    }
    if student is not None:
        stats = _family_stats(workspace, base, student)
        result["optimized"] = summary(records, stats, _paired(workspace, rows, config))
        result["searched"] = _searched(workspace, records, rows, searched, config)
    result["litert"] = litert_summary(records, litert_skipped)
    result["estimator"] = estimator_summary(workspace)
    result["end_to_end"] = _end_to_end(rows, workspace, data_yaml, config, progress)
    result["serving"] = _serving(rows, workspace, data_yaml, config, progress)
    text = markdown_table(records, TABLE_COLUMNS)
    text += "\n\n" + litert_markdown(result["litert"])
    if "optimized" in result:
        text += "\n\n" + optimized_markdown(result["optimized"])
        text += "\n\n" + searched_markdown(result["searched"])
    text += "\n\n" + estimator_markdown(result["estimator"])
    text += "\n\n" + end_to_end_markdown(result["end_to_end"])
    text += "\n\n" + serving_markdown(result["serving"])
    (out / "results.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (out / "results.md").write_text(text + "\n")
    return result


def _reference_rows(workspace: Workspace, base: int, data_yaml, imgsz: int, progress) -> list[Row]:
    """PyTorch, ONNX Runtime, OpenVINO f32 and bf16, and Ultralytics' own one-line INT8 export (NNCF inside,
    calibrated on the train split) at one imgsz."""
    onnx = export(workspace, base, ExportConfig(format="onnx", imgsz=imgsz), progress=progress)
    ir = export(workspace, base, ExportConfig(format="openvino", imgsz=imgsz), progress=progress)
    int8_config = ExportConfig(format="openvino", imgsz=imgsz, precision="int8", data=str(data_yaml), split="train")
    int8 = export(workspace, base, int8_config, progress=progress)
    return [
        Row("pytorch", base, None, imgsz),
        Row("onnx", onnx, None, imgsz),
        Row("openvino", ir, "f32", imgsz),
        Row("openvino", ir, "bf16", imgsz),
        Row("ultralytics-int8", int8, None, imgsz),
    ]


def _measure_row(workspace: Workspace, row: Row, config: BenchConfig, index: int, total: int, progress) -> dict:
    """Measure a row between two cross-checks; again (up to `retries` times) while benchmark_app's brackets drift
    apart by more than `max_drift`. Returns the last attempt's checks, with every attempt's drift."""
    path = workspace.artifact_path(row.variant_id)
    drifts = []
    for attempt in range(1, config.retries + 2):
        emit(progress, "bench latency", index, total, f"{row.key} {row.imgsz}px (attempt {attempt})")
        before = _cross_check(path, row, config)
        measure(workspace, row.variant_id, config.plan(row.precision, row.imgsz), progress=progress)
        check = bracket(before, _cross_check(path, row, config))
        drifts.append(check.get("benchmark_app_median_drift"))
        if drifts[-1] is None or drifts[-1] <= config.max_drift:
            break
    return {**check, "attempts": len(drifts), "benchmark_app_drifts": drifts}


def _cross_check(path: Path, row: Row, config: BenchConfig) -> dict:
    """A bare timing loop and, for OpenVINO rows, benchmark_app on the same artifact and settings."""
    options = config.plan(row.precision, row.imgsz).options(row.precision)
    try:
        check = {"bare_loop_p50_ms": bare_loop(path, options, row.imgsz, config.bare_loop_runs)}
    except Exception as exc:  # noqa: BLE001 - the harness row records the cause; the cross-check stays empty
        return {"cross_check_error": f"{type(exc).__name__}: {exc}"}
    if row.openvino:
        check["benchmark_app_median_ms"] = benchmark_app(
            path, row.precision, config.threads, config.benchmark_app_seconds
        )
    return check


def _records(workspace: Workspace, rows: list[Row], checks: list[dict], config: BenchConfig) -> list[dict]:
    table = comparison_table(workspace, baseline={"runtime": "pytorch"})
    names = {
        "pytorch": "pytorch",
        "onnx": "onnx-fp32",
        "openvino": "openvino",
        "ultralytics-int8": "ultralytics-openvino-int8",
        **{key: key for key in LITERT_KEYS},
        **NAMES,
    }
    records = []
    for row, check in zip(rows, checks, strict=True):
        hint = (row.precision or "default") if row.openvino else None
        same = (table["variant_id"] == row.variant_id) & (table["imgsz"] == row.imgsz)
        match = table[same & (table["precision_hint"].isna() if hint is None else table["precision_hint"] == hint)]
        if match.empty:
            continue
        found = match.iloc[-1].to_dict()
        record = {k: _plain(found.get(k)) for k in RECORD_KEYS}
        record["map_imgsz"] = int(record["map_imgsz"]) if record.get("map_imgsz") else None
        suffix = f"-{row.precision}" if row.key == "openvino" else ""
        record.update(
            variant=f"{names[row.key]}{suffix}-{row.imgsz}",
            artifact=found["variant"],
            status=found["status"],
            precision_hint=row.precision,
            speedup_vs_pytorch=_plain(found.get("speedup")),
            gflops=_plain(found.get("gflops")),
            gops_per_s=_plain(found.get("gops_per_s")),
            error=found.get("error"),
            fingerprint=fingerprint(),
            **check,
        )
        _ratios(record, check)
        records.append(record)
    return records


def _ratios(record: dict, check: dict) -> None:
    if record["status"] != "ok":
        return
    if check.get("bare_loop_p50_ms"):
        record["bare_loop_ratio"] = check["bare_loop_p50_ms"] / record["p50_ms"]
    if check.get("benchmark_app_median_ms"):
        # benchmark_app times requests inside OpenVINO (request.latency); the harness times the whole call
        # an application makes. Both ratios are kept: wall clock, and like for like.
        record["benchmark_app_ratio"] = check["benchmark_app_median_ms"] / record["p50_ms"]
        if record.get("runtime_internal_p50_ms"):
            record["benchmark_app_ratio_internal"] = (
                check["benchmark_app_median_ms"] / record["runtime_internal_p50_ms"]
            )


def _searched(workspace: Workspace, records: list[dict], rows: list[Row], searched: int | None, config) -> dict | None:
    """The searched variant's row and verdict (None when it does not ship with this install)."""
    from ..models.cards import searched_card
    from ..models.checkpoints import load_checkpoint
    from ..models.summary import model_stats

    if searched is None:
        return None
    stats = model_stats(load_checkpoint(workspace.artifact_path(searched)).model, 640)
    paired = _paired(workspace, rows, config, ours=SEARCHED_KEY)
    return searched_summary(records, stats, searched_card(), paired)


def _paired(workspace: Workspace, rows: list[Row], config: BenchConfig, *, ours: str = "pipeline-int8") -> dict | None:
    """A row (the pipeline's by default) vs Ultralytics INT8 at 640 in alternating rounds (see `paired_ratio`)."""
    pick = {r.key: r for r in rows if r.imgsz == 640 and r.key in (ours, "ultralytics-int8")}
    if len(pick) < 2:
        return None
    ours, theirs = pick[ours], pick["ultralytics-int8"]
    options = config.plan(None, 640).options(None)
    return paired_ratio(
        workspace.artifact_path(ours.variant_id), workspace.artifact_path(theirs.variant_id), options, 640
    )


def _end_to_end(rows: list[Row], workspace: Workspace, data_yaml, config: BenchConfig, progress) -> dict | None:
    """The workbench's fast path against Ultralytics' predict on the Ultralytics INT8 export at 320 (else the
    smallest size benched), on the val images; None without that row. A failure is recorded, not raised: the
    rows above it stand."""
    from ..data.checks import list_images
    from .end_to_end import end_to_end

    imgsz = 320 if 320 in config.imgsizes else min(config.imgsizes)
    row = next((r for r in rows if r.key == "ultralytics-int8" and r.imgsz == imgsz), None)
    if row is None:
        return None
    path = workspace.artifact_path(row.variant_id)
    try:
        return end_to_end(path, list_images(data_yaml, "val"), imgsz, config.threads, progress=progress)
    except Cancelled:
        raise
    except Exception as exc:  # noqa: BLE001 - recorded in results.json and the markdown
        return {"error": f"{type(exc).__name__}: {exc}", "artifact": str(path), "imgsz": imgsz}


def _serving(rows: list[Row], workspace: Workspace, data_yaml, config: BenchConfig, progress) -> dict | None:
    """Served (HTTPS, an API key, the audit log, 4 clients) against in-process throughput, and the latency TLS + key
    + audit add, on the variant the end-to-end section runs (the Ultralytics INT8 export at 320, else the smallest
    size benched), with the val images as JPEGs; None without that row. Skipped when `config.serving` is off; a
    failure is recorded, not raised."""
    from ..data.checks import list_images
    from .serving import serving_section

    imgsz = 320 if 320 in config.imgsizes else min(config.imgsizes)
    row = next((r for r in rows if r.key == "ultralytics-int8" and r.imgsz == imgsz), None)
    if row is None:
        return None
    path = workspace.artifact_path(row.variant_id)
    if not config.serving:
        return {"skipped": "BenchConfig(serving=False)", "artifact": str(path), "imgsz": imgsz}
    try:
        images = list_images(data_yaml, "val")
        return serving_section(path, images, imgsz=imgsz, threads=config.threads, progress=progress)
    except Cancelled:
        raise
    except Exception as exc:  # noqa: BLE001 - recorded in results.json and the markdown
        return {"error": f"{type(exc).__name__}: {exc}", "artifact": str(path), "imgsz": imgsz}


def _family_stats(workspace: Workspace, parent: int, student: int) -> dict[str, dict]:
    """Parameters and GFLOPs at 640 of the model behind each bench row family."""
    from ..models.checkpoints import load_checkpoint
    from ..models.summary import model_stats

    parent_stats = model_stats(load_checkpoint(workspace.artifact_path(parent)).model, 640)
    student_stats = model_stats(load_checkpoint(workspace.artifact_path(student)).model, 640)
    families = [
        "pytorch",
        "onnx-fp32",
        "openvino-f32",
        "openvino-bf16",
        "ultralytics-openvino-int8",
        *LITERT_KEYS,
        NAMES["nncf-int8"],
        NAMES["nncf-int8-onnx"],
    ]
    return {**dict.fromkeys(families, parent_stats), NAMES["pipeline-int8"]: student_stats}


def _plain(value):
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        value = value.item()
    if isinstance(value, float) and np.isnan(value):
        return None
    return value
