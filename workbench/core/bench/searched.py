"""The searched variant's row of `make bench`: the best feasible trial of the shipped constrained search, NNCF INT8
for OpenVINO, against Ultralytics' own OpenVINO INT8 export of the parent at 640, in the same run.

Targets (issue: sweeps): p50 at 640 at most 0.5x Ultralytics' INT8 export's, mAP50-95 within 0.01 of the FP32
parent (both at the training imgsz). The verdict reads the paired check (the two artifacts timed in alternating
rounds, judged by `measure.paired.ratio_bound`: the target holds only where the rounds' 95% bound is within it)
when there is one, else the ratio of the two rows, as the pipeline's verdict does.
"""

from __future__ import annotations

from ..measure.paired import HOLDS
from ..report.tables import markdown_table
from .cross_check import latency_verdict, verdict_word

KEY = "search-int8"
NAME = "searched-student-openvino-int8"  # its bench rows: NAME-320, NAME-640
REFERENCE = "ultralytics-openvino-int8"
TARGET_RATIO = 0.5
TARGET_DROP = 0.01
COLUMNS = [
    "variant",
    "p50_ms_640",
    "ultralytics_int8_p50_ms_640",
    "ratio_vs_ultralytics_int8_640",
    "map50_95",
    "fp32_parent_map50_95",
    "map_drop",
    "map_imgsz",
    "params",
    "gflops",
]


def searched_summary(records: list[dict], stats: dict, card: dict, paired: dict | None = None) -> dict:
    """The searched variant's row with the FP32 parent's mAP50-95 beside it, the targets and the verdict.

    Also writes `ratio_vs_ultralytics_int8_640` into the searched variant's own 640 record."""

    def find(prefix: str, imgsz: int | None) -> dict:
        return next((r for r in records if r["variant"] == f"{prefix}-{imgsz}" and r["status"] == "ok"), {})

    map_imgsz = next((int(r["map_imgsz"]) for r in records if r.get("map_imgsz")), None)
    ours, theirs = find(NAME, 640), find(REFERENCE, 640)
    row = {
        "variant": NAME,
        "p50_ms_640": ours.get("p50_ms"),
        "ultralytics_int8_p50_ms_640": theirs.get("p50_ms"),
        "map50_95": find(NAME, map_imgsz).get("map50_95"),
        "fp32_parent_map50_95": find("pytorch", map_imgsz).get("map50_95"),
        "map_imgsz": map_imgsz,
        **stats,
    }
    if row["p50_ms_640"] and row["ultralytics_int8_p50_ms_640"]:
        row["ratio_vs_ultralytics_int8_640"] = ours["ratio_vs_ultralytics_int8_640"] = (
            row["p50_ms_640"] / row["ultralytics_int8_p50_ms_640"]
        )
    if row["map50_95"] is not None and row["fp32_parent_map50_95"] is not None:
        row["map_drop"] = row["fp32_parent_map50_95"] - row["map50_95"]
    ratio = paired["ratio"] if paired else row.get("ratio_vs_ultralytics_int8_640")
    latency = latency_verdict(ratio, paired, TARGET_RATIO)
    search = card.get("search", {})
    return {
        "row": row,
        "search": {k: search.get(k) for k in ("name", "chosen_trial", "seconds_total")},
        "params": card.get("recipe", {}).get("steps"),
        "target_ratio": TARGET_RATIO,
        "target_drop": TARGET_DROP,
        "paired_640": paired,
        "verdict_ratio": ratio,
        "verdict_ratio_from": "paired check" if paired else "the two rows",
        "latency_verdict": latency,
        "pass": latency == HOLDS and row.get("map_drop", 9) <= TARGET_DROP,
    }


def searched_markdown(searched: dict | None) -> str:
    """The searched variant's row and its verdict; a line saying why when it was not benched."""
    if not searched:
        return "Searched variant: not shipped with this install, not benched."
    if "skipped" in searched:
        return f"Searched variant: not benched ({searched['skipped']})."
    digits = {"ratio_vs_ultralytics_int8_640": 3, "map50_95": 4, "fp32_parent_map50_95": 4, "map_drop": 4}
    lines = [markdown_table([searched["row"]], COLUMNS, digits={**digits, "gflops": 3})]
    ratio, drop = searched["verdict_ratio"], searched["row"].get("map_drop")
    if ratio is None or drop is None:
        lines += ["", "Searched variant or reference row missing: no verdict."]
        return "\n".join(lines)
    paired = searched.get("paired_640")
    rounds = f" ({paired['rounds']} alternating rounds, per round {paired['ratio_min']:.3f} to " if paired else ""
    rounds += f"{paired['ratio_max']:.3f})" if paired else ""
    lines += [
        "",
        f"Searched variant (sweep {searched['search']['name']}, trial {searched['search']['chosen_trial']}): p50 at "
        f"640 / Ultralytics OpenVINO INT8 = {ratio:.3f} from the {searched['verdict_ratio_from']}{rounds} "
        f"(target <= {searched['target_ratio']}); mAP50-95 {searched['row']['map50_95']:.4f} against the FP32 "
        f"parent's {searched['row']['fp32_parent_map50_95']:.4f} at {searched['row']['map_imgsz']}: drop "
        f"{drop:.4f} (target <= {searched['target_drop']}): {verdict_word(searched)}",
    ]
    return "\n".join(lines)
