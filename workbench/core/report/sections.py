"""Report sections for a study read back from the ledger: comparison table, charts, parity, failed rows, diagnoses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..store.evaluation_sets import NOT_MEASURED
from .compare import comparison_table, filter_table, measurement_columns
from .diagnoses import diagnoses_sections
from .figures import latency_distribution_figure, pareto_figure, row_label, size_figure, stage_figure
from .html import Section, figure_html
from .tables import table_html

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace

_TABLE = measurement_columns("batch", "mean_ms", "runtime_internal_p50_ms", "call_overhead_ms", "map50")
_PARITY = [
    "variant",
    "precision",
    "verdict",
    "match_rate",
    "mean_iou",
    "max_abs_diff",
    "cosine",
    "class_agreement",
    "images",
]


@dataclass(frozen=True)
class Aside:
    """Variants shown in a section of their own instead of the main chart (e.g. a two-epoch taste of a recipe)."""

    title: str
    variant_ids: tuple[int, ...]
    note: str


def study_sections(workspace: Workspace, *, asides: tuple[Aside, ...] = (), evaluation_set=None) -> list[Section]:
    """Sections for every latency, accuracy and parity measurement in the workspace, and its diagnoses if any.

    `evaluation_set`: the set whose mAPs the comparison shows (None: the one with the most variants measured).
    """
    table = comparison_table(workspace, evaluation_set=evaluation_set)
    if table.empty:
        return [Section("Comparison", "<p><em>no latency measurements yet</em></p>"), *diagnoses_sections(workspace)]
    set_aside = {i for aside in asides for i in aside.variant_ids}
    main = table[~table["variant_id"].isin(set_aside)]
    ok, failed = main[main["status"] == "ok"], table[table["status"] != "ok"]
    sections = [
        Section("Comparison", _table(ok), _comparison_note(workspace, ok)),
        Section(
            "Latency vs accuracy",
            figure_html(pareto_figure(main)),
            "Left is faster, up is more accurate. Points on the dotted line are not beaten on both axes by any "
            "other; hover for the sizes latency and mAP were measured at, GFLOPs and achieved GOP/s.",
        ),
    ]
    for aside in asides:
        rows = filter_table(table, variant_ids=set(aside.variant_ids) | set(ok[ok["step"] == "source"]["variant_id"]))
        sections.append(
            Section(
                aside.title,
                _table(rows[rows["status"] == "ok"]) + figure_html(pareto_figure(rows, title=aside.title)),
                aside.note,
            )
        )
    samples = [{"label": row_label(r), "samples_ms": r["samples_ms"]} for _, r in ok.iterrows() if r["samples_ms"]]
    sections.append(
        Section(
            "Latency distributions",
            figure_html(latency_distribution_figure(samples)),
            "A wide box or far outliers mean a noisy machine or a runtime that re-plans; trust p50, check p99.",
        )
    )
    if ok["stages"].map(lambda s: isinstance(s, dict) and bool(s)).any():
        sections.append(
            Section(
                "Where the time goes",
                figure_html(stage_figure(ok)),
                "On real images: decoding the JPEG, letterboxing, the network, and NMS. When "
                "inference is fast, the other stages start to matter.",
            )
        )
    sections.append(Section("Artifact size", figure_html(size_figure(workspace.variants()))))
    sections += _parity_and_failures(workspace, failed)
    return sections + diagnoses_sections(workspace)


def _table(rows) -> str:
    return table_html(rows[[c for c in _TABLE if c in rows]].to_dict("records"), digits=3)


def _comparison_note(workspace: Workspace, ok) -> str:
    cpu = workspace.fingerprints().iloc[-1]["data"]["cpu"]
    baseline = ok["baseline"].dropna().iloc[0] if ok["baseline"].notna().any() else "the baseline"
    unstable = int((ok["stable"] == False).sum())  # noqa: E712 - a column of True / False / None
    return (
        _set_note(ok)
        + f"{cpu['model']} ({' '.join(cpu['isa'])}), {cpu['usable_cores']} cores, batch 1. Speed-up and mAP delta "
        f"are against {baseline} at the same imgsz. mAP is measured at the row's imgsz unless map_imgsz says "
        "otherwise. Precision is what the runtime actually computed in (precision_hint: what OpenVINO was asked "
        "for). A latency is measured in windows until three agree within 10% (stable); spread is how far apart "
        f"the last ones were{f', and {unstable} row(s) never settled' if unstable else ''}. GOP/s is the model's "
        f"GFLOPs per image over p50; for scale, an fp32 matrix multiply reaches "
        f"{ok['machine_gemm_gflops'].max():.0f} GFLOP/s here."
    )


def _set_note(ok) -> str:
    """Which images every mAP here was measured on, the variants not measured on them, the other sets."""
    shown = ok["evaluation_set"].dropna()
    if not len(shown):
        return "No accuracy measured yet. "
    missing = ok[ok["map_note"] == NOT_MEASURED]["variant"].drop_duplicates().tolist()
    others = [s for s in ok.attrs.get("evaluation_sets", []) if s != shown.iloc[0]]
    return (
        f"Every mAP here was measured on {shown.iloc[0]}"
        + (f"; {NOT_MEASURED}: {', '.join(map(str, missing))}" if missing else "")
        + (f"; other sets in the ledger, not mixed in: {'; '.join(others)}" if others else "")
        + ". "
    )


def _parity_and_failures(workspace: Workspace, failed) -> list[Section]:
    sections = []
    parity = workspace.measurements("parity").rename(columns={"ctx_precision": "precision"})
    if not parity.empty and "verdict" in parity:
        sections.append(
            Section(
                "Parity with the parent",
                table_html(parity[[c for c in _PARITY if c in parity]].to_dict("records")),
                "Boxes of the variant matched to its parent's on the same images; a pass needs a match rate of 0.99 "
                "and a mean IoU of 0.95. An export should pass; INT8 and bf16 change the arithmetic on purpose, so "
                "they may miss the bar by a little while their mAP, in the table above, holds.",
            )
        )
    if not failed.empty:
        sections.append(
            Section(
                "Failed rows",
                table_html(failed[["variant", "runtime", "imgsz", "error"]].to_dict("records")),
                "These settings did not run; the cause is recorded, the rest of the study went on.",
            )
        )
    return sections
