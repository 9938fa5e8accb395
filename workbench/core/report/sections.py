"""Report sections for a study read back from the ledger: comparison table, charts, parity, failed rows."""

from __future__ import annotations

from .compare import comparison_table
from .figures import latency_distribution_figure, pareto_figure, row_label, size_figure, stage_figure
from .html import Section, figure_html, table_html

_TABLE = ["variant", "runtime", "precision_hint", "precision", "imgsz", "batch", "threads", "p50_ms", "p90_ms",
          "p99_ms", "first_ms", "load_ms", "gflops", "gops_per_s", "throughput_fps", "map50_95", "map_imgsz",
          "speedup", "map50_95_delta", "size_mb"]


def study_sections(workspace) -> list[Section]:
    """Sections for every latency, accuracy and parity measurement in the workspace."""
    table = comparison_table(workspace)
    if table.empty:
        return [Section("Comparison", "<p><em>no latency measurements yet</em></p>")]
    ok, failed = table[table["status"] == "ok"], table[table["status"] != "ok"]
    fingerprint = workspace.fingerprints().iloc[-1]["data"]
    cpu = fingerprint["cpu"]
    sections = [
        Section("Comparison", table_html(ok[[c for c in _TABLE if c in ok]].to_dict("records"), digits=3),
                f"{cpu['model']} ({' '.join(cpu['isa'])}), {cpu['usable_cores']} cores. Speed-up and mAP delta are "
                f"against {ok['baseline'].dropna().iloc[0] if ok['baseline'].notna().any() else 'the baseline'} at "
                "the same imgsz. mAP is measured once per variant at the training imgsz (map_imgsz). Precision is "
                "what the runtime actually computed in. GOP/s is the model's GFLOPs per image over p50; for scale, "
                f"an fp32 matrix multiply reaches {ok['machine_gemm_gflops'].max():.0f} GFLOP/s here."),
        Section("Latency vs accuracy", figure_html(pareto_figure(table)),
                "Lower left is slow and inaccurate, upper left is what you want. Points on the dotted line are "
                "not beaten on both axes by any other; hover for GFLOPs and achieved GOP/s."),
        Section("Latency distributions", figure_html(latency_distribution_figure(
            [{"label": row_label(r), "samples_ms": r["samples_ms"]} for _, r in ok.iterrows() if r["samples_ms"]])),
                "A wide box or far outliers mean a noisy machine or a runtime that re-plans; trust p50, check p99."),
    ]
    if ok["stages"].map(lambda s: isinstance(s, dict) and bool(s)).any():
        sections.append(Section("Where the time goes", figure_html(stage_figure(ok)),
                                "On real images: decoding the JPEG, letterboxing, the network, and NMS. When "
                                "inference is fast, the other stages start to matter."))
    sections.append(Section("Artifact size", figure_html(size_figure(workspace.variants()))))
    parity = workspace.measurements("parity")
    if not parity.empty:
        columns = [c for c in ("variant", "verdict", "match_rate", "mean_iou", "max_abs_diff", "cosine",
                               "class_agreement", "score_mae", "images") if c in parity]
        sections.append(Section("Parity with the parent", table_html(parity[columns].to_dict("records")),
                                "Boxes of the export matched to the PyTorch parent's on the same images; "
                                "a pass needs a match rate of 0.99 and a mean IoU of 0.95."))
    if not failed.empty:
        sections.append(Section("Failed rows", table_html(
            failed[["variant", "runtime", "imgsz", "batch", "error"]].to_dict("records")),
            "These settings did not run; the cause is recorded, the rest of the study went on."))
    return sections
