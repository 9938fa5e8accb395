"""The optimized rows of `make bench`: NNCF INT8 of the parent (OpenVINO and ONNX Runtime) and the best pipeline
found for the demo model (prune 30% -> fine-tune -> NNCF INT8), next to Ultralytics' own INT8 export.

The pruned and retrained student ships with the package (its 120 epochs take about 98 minutes on 2 cores);
`workbench optimize --recipe demo-best` reproduces it. The bench re-prunes the parent to record the lineage,
checks that the shipped student has exactly that architecture, then quantizes, measures and evaluates everything
in the same run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..measure.paired import HOLDS
from ..models.cards import student_card
from ..optimize.quantize import QuantizeConfig, quantize
from ..report.tables import markdown_table
from .cross_check import latency_verdict, verdict_word
from .searched import KEY as SEARCHED_KEY
from .searched import NAME as SEARCHED_NAME

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace

TARGET_RATIO = 0.75  # the pipeline's p50 at 640 over Ultralytics' OpenVINO INT8 export's
TARGET_DROP = 0.01  # mAP50-95 the pipeline may lose against the FP32 parent, at the training imgsz
NAMES = {
    "nncf-int8": "nncf-openvino-int8",
    "nncf-int8-onnx": "nncf-onnxruntime-int8",
    "pipeline-int8": "pruned-student-openvino-int8",
    SEARCHED_KEY: SEARCHED_NAME,
}


@dataclass(frozen=True)
class Row:
    """One bench row: which artifact (`key`), the OpenVINO precision hint it runs with, and the input size."""

    key: str
    variant_id: int
    precision: str | None
    imgsz: int

    @property
    def openvino(self) -> bool:
        return self.key in ("openvino", "ultralytics-int8", "nncf-int8", "pipeline-int8", SEARCHED_KEY)


def optimized_rows(
    workspace: Workspace,
    parent: int,
    student: int | None,
    data_yaml,
    imgsizes,
    progress=None,
    searched: int | None = None,
) -> list[Row]:
    """NNCF INT8 of the parent (OpenVINO, ONNX Runtime), of the student and of the searched variant (when there are
    ones) at each imgsz."""
    rows = []
    for imgsz in imgsizes:
        config = QuantizeConfig(format="openvino", imgsz=imgsz, calibration_images=300)
        onnx = QuantizeConfig(format="onnx", imgsz=imgsz, calibration_images=300)
        rows += [
            Row("nncf-int8", quantize(workspace, parent, data_yaml, config, progress=progress), None, imgsz),
            Row("nncf-int8-onnx", quantize(workspace, parent, data_yaml, onnx, progress=progress), None, imgsz),
        ]
        if student is not None:
            rows.append(
                Row("pipeline-int8", quantize(workspace, student, data_yaml, config, progress=progress), None, imgsz)
            )
        if searched is not None:
            rows.append(
                Row(SEARCHED_KEY, quantize(workspace, searched, data_yaml, config, progress=progress), None, imgsz)
            )
    return rows


def summary(records: list[dict], stats: dict[str, dict], paired: dict | None = None) -> dict:
    """The done-when check: pipeline p50 at 640 against Ultralytics' INT8, its mAP50-95 against the FP32 parent.

    The latency verdict reads the paired check when there is one (both artifacts timed in alternating rounds, so a
    machine whose speed drifts between rows is compared with itself), else the ratio of the two rows.
    """

    def find(prefix: str, imgsz: int) -> dict:
        return next((r for r in records if r["variant"] == f"{prefix}-{imgsz}" and r["status"] == "ok"), {})

    pipeline, reference = find(NAMES["pipeline-int8"], 640), find("ultralytics-openvino-int8", 640)
    map_imgsz = next((int(r["map_imgsz"]) for r in records if r.get("map_imgsz")), None)
    parent = find("pytorch", map_imgsz) if map_imgsz else {}
    pipe_map = find(NAMES["pipeline-int8"], map_imgsz) if map_imgsz else {}
    out = {
        "pipeline": student_card()["recipe"],
        "map_imgsz": map_imgsz,
        "target_ratio": TARGET_RATIO,
        "target_drop": TARGET_DROP,
        "pipeline_p50_ms_640": pipeline.get("p50_ms"),
        "ultralytics_int8_p50_ms_640": reference.get("p50_ms"),
        "pipeline_map50_95": pipe_map.get("map50_95"),
        "fp32_parent_map50_95": parent.get("map50_95"),
        "table": variant_table(records, stats),
    }
    if out["pipeline_p50_ms_640"] and out["ultralytics_int8_p50_ms_640"]:
        out["ratio_640"] = out["pipeline_p50_ms_640"] / out["ultralytics_int8_p50_ms_640"]
    if out["pipeline_map50_95"] is not None and out["fp32_parent_map50_95"] is not None:
        out["map_drop"] = out["fp32_parent_map50_95"] - out["pipeline_map50_95"]
    out["paired_640"] = paired
    out["verdict_ratio"] = paired["ratio"] if paired else out.get("ratio_640")
    out["verdict_ratio_from"] = "paired check" if paired else "the two rows"
    out["latency_verdict"] = latency_verdict(out["verdict_ratio"], paired, TARGET_RATIO)
    out["pass"] = bool(out["latency_verdict"] == HOLDS and out.get("map_drop", 9) <= TARGET_DROP)
    return out


def variant_table(records: list[dict], stats: dict[str, dict]) -> list[dict]:
    """variant, params, GFLOPs, p50 at each imgsz, mAP50-95: one row per bench variant family."""
    table: dict[str, dict] = {}
    for record in records:
        if record["status"] != "ok":
            continue
        family = record["variant"].rsplit("-", 1)[0]
        row = table.setdefault(family, {"variant": family, **stats.get(family, {})})
        row[f"p50_ms_{record['imgsz']}"] = record["p50_ms"]
        if record.get("map50_95") is not None:
            row["map50_95"] = record["map50_95"]
    return list(table.values())


def optimized_markdown(optimized: dict) -> str:
    """The variant table (params, GFLOPs, p50 per imgsz, mAP50-95) and the verdict against the targets."""
    sizes = sorted({k for row in optimized["table"] for k in row if k.startswith("p50_ms_")})
    columns = ["variant", "params", "gflops", *sizes, "map50_95"]
    digits = {"gflops": 3, "map50_95": 4, **dict.fromkeys(sizes, 2)}
    lines = [markdown_table(optimized["table"], columns, digits=digits, headers={"gflops": "GFLOPs@640"})]
    ratio, drop = optimized.get("verdict_ratio"), optimized.get("map_drop")
    verdict = "Pipeline or reference row missing: no verdict."
    if ratio is not None and drop is not None:
        rows = f"; the two rows give {optimized['ratio_640']:.3f}" if optimized.get("paired_640") else ""
        verdict = (
            f"Pipeline p50 at 640 / Ultralytics OpenVINO INT8: {ratio:.3f} from the {optimized['verdict_ratio_from']}"
            f"{rows} (target <= {optimized['target_ratio']}); mAP50-95 drop vs FP32 parent at "
            f"{optimized['map_imgsz']}: {drop:.4f} (target <= {optimized['target_drop']}): "
            f"{verdict_word(optimized)}"
        )
    lines += ["", verdict]
    paired = optimized.get("paired_640")
    if paired:
        lines.append(
            f"Paired check at 640 ({paired['rounds']} alternating rounds of {paired['calls_per_round']} calls): "
            f"pipeline / Ultralytics INT8 = {paired['ratio']:.3f} "
            f"(per round {paired['ratio_min']:.3f} to {paired['ratio_max']:.3f}{_bound_words(paired)})."
        )
    return "\n".join(lines)


def _bound_words(paired: dict) -> str:
    bound = paired.get("bound")
    if not bound:
        return ""
    return f"; 95% bounds {bound['low']:.3f} to {bound['high']:.3f}, seeded bootstrap over the rounds"
