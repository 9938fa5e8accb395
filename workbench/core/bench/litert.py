"""The LiteRT rows of `make bench`: Ultralytics' `.tflite` export of the model in fp32 and in static INT8
(ai-edge-quantizer, calibrated on the train split), run by the LiteRT interpreter (XNNPACK) beside the other rows.

Rows that cannot run (the `litert` extra missing, an export failing) are reported as skipped with the reason; the
rest of the bench goes on.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from ..data.checks import list_images
from ..errors import WorkbenchError
from ..models.export import ExportConfig, export
from ..report.tables import markdown_table
from .optimized import Row

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace

CALIBRATION_IMAGES = 300  # as many as the NNCF rows use (and Ultralytics recommends)
KEYS = {"litert-fp32": "fp32", "litert-int8": "int8"}
_PACKAGES = ("ai_edge_litert", "litert_torch", "ai_edge_quantizer")


def litert_rows(workspace: Workspace, base: int, data_yaml, imgsz: int, progress=None) -> tuple[list[Row], list[dict]]:
    """The fp32 and INT8 LiteRT exports of `base` at `imgsz`; returns (rows, skipped) where each skipped entry
    names the row and the reason."""
    missing = [name for name in _PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        reason = f"{', '.join(missing)} not installed; fix: pip install -e '.[litert]'"
        return [], [{"variant": f"{key}-{imgsz}", "reason": reason} for key in KEYS]
    rows, skipped = [], []
    for key, precision in KEYS.items():
        config = ExportConfig(format="tflite", imgsz=imgsz, precision=precision, **_calibration(precision, data_yaml))
        try:
            rows.append(Row(key, export(workspace, base, config, progress=progress), None, imgsz))
        except WorkbenchError as exc:  # an export that fails is a skipped row, never a failed bench
            skipped.append({"variant": f"{key}-{imgsz}", "reason": f"{exc.problem}; fix: {exc.fix}"})
    return rows, skipped


def _calibration(precision: str, data_yaml) -> dict:
    """For INT8: the train split, at most CALIBRATION_IMAGES of it (the calibration keeps every image in memory)."""
    if precision != "int8":
        return {}
    train = len(list_images(data_yaml, "train"))
    return {"data": str(data_yaml), "split": "train", "fraction": min(1.0, CALIBRATION_IMAGES / max(train, 1))}


def litert_summary(records: list[dict], skipped: list[dict]) -> dict:
    """INT8 over fp32 p50 of LiteRT at each imgsz where both rows were measured, and the skipped rows."""
    ok = {r["variant"]: r for r in records if r["status"] == "ok" and r["runtime"] == "litert"}
    ratios = []
    for imgsz in sorted({r["imgsz"] for r in ok.values()}):
        fp32, int8 = ok.get(f"litert-fp32-{imgsz}"), ok.get(f"litert-int8-{imgsz}")
        if fp32 and int8:
            ratios.append(
                {
                    "imgsz": imgsz,
                    "fp32_p50_ms": fp32["p50_ms"],
                    "int8_p50_ms": int8["p50_ms"],
                    "int8_over_fp32": int8["p50_ms"] / fp32["p50_ms"],
                    "int8_speedup": fp32["p50_ms"] / int8["p50_ms"],
                    "int8_precision": int8["precision"],
                }
            )
    return {"ratios": ratios, "skipped": skipped}


def litert_markdown(summary: dict) -> str:
    """The LiteRT INT8 / fp32 table, and one line per skipped row."""
    lines = ["LiteRT (XNNPACK): INT8 against fp32, same run."]
    if summary["ratios"]:
        columns = ["imgsz", "fp32_p50_ms", "int8_p50_ms", "int8_over_fp32", "int8_speedup", "int8_precision"]
        lines += ["", markdown_table(summary["ratios"], columns, digits=dict.fromkeys(columns[1:5], 3))]
    lines += [f"- skipped {s['variant']}: {s['reason']}" for s in summary["skipped"]]
    return "\n".join(lines)
