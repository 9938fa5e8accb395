"""`make bench` / `workbench bench`: the demo model on every runtime at 320 and 640, checked against
OpenVINO's benchmark_app and a bare timing loop, written to bench/results.json and a markdown table."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..measure.accuracy import AccuracyConfig
from .optimized import NAMES, optimized_rows, paired_ratio, record_student, summary
from ..report.compare import comparison_table
from ..environment import fingerprint
from ..models.export import ExportConfig, export
from ..measure.latency import LatencyConfig
from ..models.sources import demo_card, demo_weights
from ..progress import ProgressFn, emit
from ..models.runners import RuntimeOptions, example_input, open_runner
from ..measure.measure import evaluate_variant, measure_latency

RECORD_KEYS = ("variant", "runtime", "precision", "imgsz", "batch", "threads", "p50_ms", "p90_ms", "p99_ms",
               "mean_ms", "first_ms", "load_ms", "map50", "map50_95", "map_imgsz", "size_mb",
               "runtime_internal_p50_ms", "call_overhead_ms")


@dataclass(frozen=True)
class BenchConfig:
    imgsizes: tuple[int, ...] = (320, 640)
    threads: int = 2
    latency: LatencyConfig = field(default_factory=lambda: LatencyConfig(warmup_runs=10, warmup_s=1.0, min_runs=50,
                                                                         min_time_s=5.0))
    benchmark_app_seconds: int = 10
    bare_loop_runs: int = 100


@dataclass(frozen=True)
class Row:
    key: str  # which export, e.g. "onnx"
    variant_id: int
    options: RuntimeOptions
    imgsz: int


def run_bench(out: Path | str, config: BenchConfig = BenchConfig(), *, progress: ProgressFn | None = None) -> dict:
    """Export, measure, cross-check and write `out/results.json` and `out/results.md`; returns the JSON."""
    from ..data.generate import generate_shapes
    from ..services.shipped_models import DEMO_DATA
    from ..store.workspace import Workspace

    out = Path(out)
    workspace = Workspace(out / "workspace")
    dataset = generate_shapes(workspace.datasets, DEMO_DATA, progress=progress)
    card = demo_card()
    map_imgsz = card["imgsz"]
    base = workspace.add_artifact(demo_weights(), "yolo11n-shapes.pt", step="source", params={"source": "demo"},
                                  format="pt")
    ov = RuntimeOptions(threads=config.threads, hint="none", streams=1)  # what benchmark_app -hint none runs
    rows: list[Row] = []
    for imgsz in sorted(set(config.imgsizes) | {map_imgsz}):
        onnx = export(workspace, base, ExportConfig(format="onnx", imgsz=imgsz), progress=progress)
        ir = export(workspace, base, ExportConfig(format="openvino", imgsz=imgsz), progress=progress)
        # the reference: Ultralytics' own one-line INT8 export (NNCF inside), calibrated on the train split
        int8 = export(workspace, base, ExportConfig(format="openvino", imgsz=imgsz, precision="int8",
                                                    data=str(dataset.data_yaml), split="train"), progress=progress)
        rows += [Row("pytorch", base, RuntimeOptions(threads=config.threads), imgsz),
                 Row("onnx", onnx, RuntimeOptions(threads=config.threads), imgsz),
                 Row("openvino", ir, replace(ov, precision="f32"), imgsz),
                 Row("openvino", ir, replace(ov, precision="bf16"), imgsz),
                 Row("ultralytics-int8", int8, ov, imgsz)]
    optimized = record_student(workspace, base, progress)
    rows += optimized_rows(workspace, optimized, dataset.data_yaml, sorted(set(config.imgsizes) | {map_imgsz}),
                           config.threads, Row, progress)
    measured = [r for r in rows if r.imgsz in config.imgsizes]
    checks = []
    for index, row in enumerate(measured):
        emit(progress, "bench latency", index, len(measured), f"{row.key} {row.imgsz}px")
        # the cross-checks bracket their row (just before and just after), so a machine whose speed drifts
        # from minute to minute is compared with itself
        before = _cross_check(workspace.artifact_path(row.variant_id), row, config)
        measure_latency(workspace, row.variant_id, row.options, imgsz=row.imgsz, config=config.latency)
        checks.append(_bracket(before, _cross_check(workspace.artifact_path(row.variant_id), row, config)))
    accuracy = AccuracyConfig(imgsz=map_imgsz)
    for row in rows:  # once per variant and precision, at the training imgsz
        if row.imgsz == map_imgsz:
            evaluate_variant(workspace, row.variant_id, dataset.data_yaml, accuracy, row.options, progress=progress)
    records = _records(workspace, measured, checks)
    stats = _family_stats(workspace, optimized)
    result = {"records": records, "optimized": summary(records, stats), "fingerprint": fingerprint(), "config": {
        "threads": config.threads, "batch": 1, "latency": config.latency.__dict__, "map_imgsz": map_imgsz,
        "benchmark_app": f"-hint none -nstreams 1 -nthreads {config.threads} -api sync -t "
                         f"{config.benchmark_app_seconds}", "dataset": dataset.config.name}}
    result["optimized"]["paired_640"] = _paired(workspace, rows, config)
    (out / "results.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (out / "results.md").write_text(markdown_table(records) + "\n\n" + optimized_markdown(result["optimized"]) + "\n")
    return result


def _paired(workspace, rows: list[Row], config: BenchConfig) -> dict | None:
    """Pipeline vs Ultralytics INT8 at 640 in alternating rounds (see `paired_ratio`)."""
    pick = {r.key: r for r in rows if r.imgsz == 640 and r.key in ("pipeline-int8", "ultralytics-int8")}
    if len(pick) < 2:
        return None
    ours, theirs = pick["pipeline-int8"], pick["ultralytics-int8"]
    return paired_ratio(workspace.artifact_path(ours.variant_id), workspace.artifact_path(theirs.variant_id),
                        ours.options, 640)


def _family_stats(workspace, optimized) -> dict[str, dict]:
    """Parameters and GFLOPs at 640 of the model behind each bench row family."""
    from ..models.sources import load_model
    from ..optimize.prune import model_stats

    parent = model_stats(load_model(workspace.artifact_path(optimized.parent)).model, 640)
    student = model_stats(load_model(workspace.artifact_path(optimized.student)).model, 640)
    families = ["pytorch", "onnx-fp32", "openvino-f32", "openvino-bf16", "ultralytics-openvino-int8",
                NAMES["nncf-int8"], NAMES["nncf-int8-onnx"]]
    return {**{f: parent for f in families}, NAMES["pipeline-int8"]: student}


def optimized_markdown(optimized: dict) -> str:
    """The variant table (params, GFLOPs, p50 per imgsz, mAP50-95) and the verdict against the targets."""
    sizes = sorted({k for row in optimized["table"] for k in row if k.startswith("p50_ms_")})
    lines = ["| variant | params | GFLOPs@640 | " + " | ".join(sizes) + " | mAP50-95 |",
             "|" + "---|" * (4 + len(sizes))]
    for row in optimized["table"]:
        cells = [f"{row[k]:.2f}" if row.get(k) else "" for k in sizes]
        score = f"{row['map50_95']:.4f}" if row.get("map50_95") is not None else ""
        lines.append(f"| {row['variant']} | {row.get('params', '')} | {row.get('gflops', '')} | "
                     f"{' | '.join(cells)} | {score} |")
    ratio, drop = optimized.get("ratio_640"), optimized.get("map_drop")
    verdict = "Pipeline or reference row missing: no verdict."
    if ratio is not None and drop is not None:
        verdict = (f"Pipeline p50 at 640 / Ultralytics OpenVINO INT8: {ratio:.3f} (target <= "
                   f"{optimized['target_ratio']}); mAP50-95 drop vs FP32 parent at {optimized['map_imgsz']}: "
                   f"{drop:.4f} (target <= {optimized['target_drop']}): {'PASS' if optimized['pass'] else 'FAIL'}")
    lines += ["", verdict]
    paired = optimized.get("paired_640")
    if paired:
        lines.append(f"Paired check at 640 ({paired['rounds']} alternating rounds of {paired['calls_per_round']} "
                     f"calls): pipeline / Ultralytics INT8 = {paired['ratio']:.3f} "
                     f"(per round {paired['ratio_min']:.3f} to {paired['ratio_max']:.3f}).")
    return "\n".join(lines)


def _cross_check(path: Path, row: Row, config: BenchConfig) -> dict:
    """A bare timing loop and, for OpenVINO rows, benchmark_app on the same artifact and settings."""
    try:
        check = {"bare_loop_p50_ms": _bare_loop(path, row.options, row.imgsz, config.bare_loop_runs)}
    except Exception as exc:  # the harness row records the cause; the cross-check just stays empty
        return {"cross_check_error": f"{type(exc).__name__}: {exc}"}
    if row.key in ("openvino", "ultralytics-int8", "nncf-int8", "pipeline-int8"):
        check["benchmark_app_median_ms"] = benchmark_app(path, row.options.precision, config)
    return check


def _bracket(before: dict, after: dict) -> dict:
    """Mean of the checks before and after a row, and how far they drifted apart (a noise gauge)."""
    merged = {**before, **after}
    for key in ("bare_loop_p50_ms", "benchmark_app_median_ms"):
        pair = [c[key] for c in (before, after) if c.get(key)]
        if pair:
            merged[key] = sum(pair) / len(pair)
            merged[key.replace("_ms", "_drift")] = abs(pair[0] - pair[-1]) / merged[key]
    return merged


def _records(workspace, rows: list[Row], checks: list[dict]) -> list[dict]:
    table = comparison_table(workspace, baseline={"runtime": "pytorch"})
    names = {"pytorch": "pytorch", "onnx": "onnx-fp32", "openvino": "openvino", "ultralytics-int8":
             "ultralytics-openvino-int8", **NAMES}
    records = []
    for row, check in zip(rows, checks, strict=True):
        hint = row.options.precision
        match = table[(table["variant_id"] == row.variant_id) & (table["imgsz"] == row.imgsz)
                      & (table["precision_hint"].isna() if hint is None else table["precision_hint"] == hint)]
        if match.empty:
            continue
        found = match.iloc[-1].to_dict()
        record = {k: _plain(found.get(k)) for k in RECORD_KEYS}
        suffix = f"-{hint}" if row.key == "openvino" else ""
        record.update(variant=f"{names[row.key]}{suffix}-{row.imgsz}", artifact=found["variant"],
                      status=found["status"], precision_hint=hint, speedup_vs_pytorch=_plain(found.get("speedup")),
                      gflops=_plain(found.get("gflops")), gops_per_s=_plain(found.get("gops_per_s")),
                      error=found.get("error"), fingerprint=fingerprint(), **check)
        if found["status"] == "ok" and check.get("bare_loop_p50_ms"):
            record["bare_loop_ratio"] = check["bare_loop_p50_ms"] / record["p50_ms"]
        if found["status"] == "ok" and check.get("benchmark_app_median_ms"):
            # benchmark_app times requests inside OpenVINO (request.latency); the harness times the whole call
            # an application makes. Both ratios are kept: wall clock, and like for like.
            record["benchmark_app_ratio"] = check["benchmark_app_median_ms"] / record["p50_ms"]
            if record.get("runtime_internal_p50_ms"):
                record["benchmark_app_ratio_internal"] = (check["benchmark_app_median_ms"]
                                                          / record["runtime_internal_p50_ms"])
        records.append(record)
    return records


def _bare_loop(path: Path, options: RuntimeOptions, imgsz: int, runs: int) -> float:
    """The simplest possible timing of the same artifact: load, 10 calls, then `runs` timed calls; the median."""
    runner = open_runner(path, options)
    x = example_input(runner, imgsz)
    for _ in range(10):
        runner(x)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        runner(x)
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def benchmark_app(path: Path, precision: str | None, config: BenchConfig) -> float | None:
    """Median latency from OpenVINO's benchmark_app, sync API, same threads and streams; None if unavailable."""
    tool = shutil.which("benchmark_app", path=str(Path(sys.executable).parent)) or shutil.which("benchmark_app")
    if tool is None:
        return None
    xml = next(Path(path).glob("*.xml"))
    command = [tool, "-m", str(xml), "-d", "CPU", "-hint", "none", "-nstreams", "1", "-nthreads",
               str(config.threads), "-api", "sync", "-t", str(config.benchmark_app_seconds)]
    if precision:
        command += ["-infer_precision", precision]
    run = subprocess.run(command, capture_output=True, text=True, timeout=config.benchmark_app_seconds * 6 + 120)
    found = re.search(r"Median:\s+([\d.]+)\s*ms", run.stdout)
    return float(found.group(1)) if found else None


def _plain(value):
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    if isinstance(value, float) and np.isnan(value):
        return None
    return value


def markdown_table(records: list[dict]) -> str:
    """The bench table as markdown."""
    columns = ["variant", "runtime", "precision", "imgsz", "threads", "p50_ms", "p90_ms", "p99_ms", "first_ms",
               "load_ms", "speedup_vs_pytorch", "map50_95", "map_imgsz", "size_mb", "bare_loop_ratio",
               "benchmark_app_ratio", "benchmark_app_ratio_internal", "benchmark_app_median_drift"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for record in records:
        cells = []
        for column in columns:
            value = record.get(column)
            cells.append(f"{value:.3f}" if isinstance(value, float) else ("" if value is None else str(value)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
