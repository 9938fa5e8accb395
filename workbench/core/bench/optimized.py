"""The optimized rows of `make bench`: NNCF INT8 of the parent (OpenVINO and ONNX Runtime) and the best pipeline
found for the demo model (prune 30% -> fine-tune -> NNCF INT8), next to Ultralytics' own INT8 export.

The pruned and retrained student ships with the package (its 120 epochs take about 80 minutes on 2 cores);
`workbench optimize --recipe demo-best` reproduces it. The bench re-prunes the parent to record the
lineage, checks that the shipped student has exactly that architecture, then quantizes, measures and evaluates
everything in the same run.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..errors import WorkbenchError
from ..models.sources import load_model, student_card, student_weights
from ..progress import ProgressFn
from ..optimize.prune import PruneConfig, model_stats, prune
from ..optimize.quantize import QuantizeConfig, quantize
from ..models.runners import RuntimeOptions

TARGET_RATIO = 0.75  # the pipeline's p50 at 640 over Ultralytics' OpenVINO INT8 export's
TARGET_DROP = 0.01  # mAP50-95 the pipeline may lose against the FP32 parent, at the training imgsz
NAMES = {"nncf-int8": "nncf-openvino-int8", "nncf-int8-onnx": "nncf-onnxruntime-int8",
         "pipeline-int8": "pruned-student-openvino-int8"}


class StudentMismatch(WorkbenchError):
    """The shipped student does not have the architecture its recipe produces from this parent."""


@dataclass(frozen=True)
class OptimizedVariants:
    parent: int
    pruned: int
    student: int


def record_student(workspace, parent_id: int, progress: ProgressFn | None = None) -> OptimizedVariants:
    """Re-prune the parent as the student's recipe did and record the shipped student as its trained child."""
    card = student_card()
    prune_options = next(step["prune"] for step in card["recipe"]["steps"] if "prune" in step)
    training = next(kind for step in card["recipe"]["steps"] for kind in step if kind != "prune")
    pruned = prune(workspace, parent_id, PruneConfig(**prune_options), progress=progress)
    expected = model_stats(load_model(workspace.artifact_path(pruned)).model, 640)
    shipped = model_stats(load_model(student_weights()).model, 640)
    if expected != shipped:
        raise StudentMismatch(f"the shipped student has {shipped}, its recipe gives {expected} from this parent",
                              "retrain it: workbench optimize --recipe demo-best")
    student = workspace.add_artifact(student_weights(), student_weights().name, step=training, parent_id=pruned,
                                     format="pt", params={"shipped": True, "recipe": card["recipe"]["name"],
                                                          "epochs": card["epochs"], "card_sha256": card["sha256"]})
    return OptimizedVariants(parent_id, pruned, student)


def optimized_rows(workspace, variants: OptimizedVariants, data_yaml, imgsizes, threads: int, row_type,
                   progress: ProgressFn | None = None) -> list:
    """Quantize the parent and the student at each imgsz; return bench rows (OpenVINO rows run like Ultralytics')."""
    ov = RuntimeOptions(threads=threads, hint="none", streams=1)
    rows = []
    for imgsz in imgsizes:
        config = QuantizeConfig(format="openvino", imgsz=imgsz, calibration_images=300)
        rows += [
            row_type("nncf-int8", quantize(workspace, variants.parent, data_yaml, config, progress=progress),
                     ov, imgsz),
            row_type("nncf-int8-onnx", quantize(workspace, variants.parent, data_yaml, replace(config, format="onnx"),
                                                progress=progress), RuntimeOptions(threads=threads), imgsz),
            row_type("pipeline-int8", quantize(workspace, variants.student, data_yaml, config, progress=progress),
                     ov, imgsz),
        ]
    return rows


def paired_ratio(path_a, path_b, options: RuntimeOptions, imgsz: int, *, rounds: int = 10, calls: int = 25) -> dict:
    """Time two artifacts in alternating rounds on the same input; the median of the per-round p50 ratios a / b.

    On a machine whose speed drifts from minute to minute, rows measured one after the other can disagree by
    more than the effect; alternating rounds compare the two under the same conditions.
    """
    import time

    import numpy as np

    from ..models.runners import example_input, open_runner

    runners = [open_runner(path_a, options), open_runner(path_b, options)]
    x = example_input(runners[0], imgsz)
    for runner in runners:
        for _ in range(10):
            runner(x)
    p50 = [[], []]
    for round_index in range(rounds):
        order = (0, 1) if round_index % 2 == 0 else (1, 0)
        for which in order:
            times = []
            for _ in range(calls):
                start = time.perf_counter()
                runners[which](x)
                times.append((time.perf_counter() - start) * 1000)
            p50[which].append(float(np.median(times)))
    ratios = np.array(p50[0]) / np.array(p50[1])
    return {"ratio": float(np.median(ratios)), "ratio_min": float(ratios.min()), "ratio_max": float(ratios.max()),
            "a_p50_ms": float(np.median(p50[0])), "b_p50_ms": float(np.median(p50[1])), "rounds": rounds,
            "calls_per_round": calls, "imgsz": imgsz}


def summary(records: list[dict], stats: dict[str, dict]) -> dict:
    """The done-when check: pipeline p50 at 640 against Ultralytics' INT8, its mAP50-95 against the FP32 parent."""

    def find(prefix: str, imgsz: int) -> dict:
        return next((r for r in records if r["variant"] == f"{prefix}-{imgsz}" and r["status"] == "ok"), {})

    pipeline, reference = find(NAMES["pipeline-int8"], 640), find("ultralytics-openvino-int8", 640)
    map_imgsz = next((int(r["map_imgsz"]) for r in records if r.get("map_imgsz")), None)
    parent = find("pytorch", map_imgsz) if map_imgsz else {}
    pipe_map = find(NAMES["pipeline-int8"], map_imgsz) if map_imgsz else {}
    out = {"pipeline": student_card()["recipe"], "map_imgsz": map_imgsz, "target_ratio": TARGET_RATIO,
           "target_drop": TARGET_DROP, "pipeline_p50_ms_640": pipeline.get("p50_ms"),
           "ultralytics_int8_p50_ms_640": reference.get("p50_ms"), "pipeline_map50_95": pipe_map.get("map50_95"),
           "fp32_parent_map50_95": parent.get("map50_95"), "table": variant_table(records, stats)}
    if out["pipeline_p50_ms_640"] and out["ultralytics_int8_p50_ms_640"]:
        out["ratio_640"] = out["pipeline_p50_ms_640"] / out["ultralytics_int8_p50_ms_640"]
    if out["pipeline_map50_95"] is not None and out["fp32_parent_map50_95"] is not None:
        out["map_drop"] = out["fp32_parent_map50_95"] - out["pipeline_map50_95"]
    out["pass"] = bool(out.get("ratio_640", 9) <= TARGET_RATIO and out.get("map_drop", 9) <= TARGET_DROP)
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
