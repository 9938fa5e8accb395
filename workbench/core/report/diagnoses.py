"""Doctor diagnoses read back from the ledger: one row per recorded run, its ranked findings, the report section."""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from ..doctor.findings import Verdict
from .html import Section
from .tables import cell_text, table_html

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace

KIND = "diagnosis"  # the ledger measurement kind `Diagnosis.record` writes
ROW_COLUMNS = ["id", "variant", "when", "kind", "ok", "causes", "suspects", "oks", "top_check", "after", "sentence"]
VERDICT_STYLE = {  # background, text colour: a cause reads red, a suspect amber, ok green (and each says its name)
    Verdict.CAUSE.value: ("#fde2e1", "#8c1d18"),
    Verdict.SUSPECT.value: ("#fff1c2", "#6b5200"),
    Verdict.INCONCLUSIVE.value: ("#e4e7ec", "#33383f"),
    Verdict.OK.value: ("#e2f4e6", "#1b5e2c"),
}
MAX_PICTURE_BYTES = 4_000_000  # a bigger file is named, not embedded: the page must stay loadable
_MAGIC = {b"\xff\xd8\xff": "image/jpeg", b"\x89PNG\r\n\x1a\n": "image/png"}
_EVIDENCE_ITEMS = 8


def recorded_diagnoses(workspace: Workspace, variant_ids: Iterable[int] | None = None) -> list:
    """The diagnosis measurements of the workspace (or of `variant_ids`), newest first."""
    if variant_ids is None:
        found = workspace.ledger.measurements(kind=KIND)
    else:
        found = [m for v in dict.fromkeys(variant_ids) for m in workspace.ledger.measurements(variant_id=v, kind=KIND)]
    return sorted(found, key=lambda m: m.id, reverse=True)


def diagnosis_rows(workspace: Workspace, variant_ids: Iterable[int] | None = None) -> list[dict]:
    """One row per recorded diagnosis, newest first: variant, when, doctor kind, ok, the sentence, how many
    findings of each verdict, the top cause's check and fix and the metric measured after that fix."""
    names = {v.id: v.name for v in workspace.ledger.variants()}
    return [diagnosis_row(m, names.get(m.variant_id, "")) for m in recorded_diagnoses(workspace, variant_ids)]


def diagnosis_row(measurement, variant_name: str = "") -> dict:
    """The summary row of one diagnosis measurement (see `diagnosis_rows`)."""
    metrics = measurement.metrics
    findings = metrics.get("findings") or []
    verdicts = [f.get("verdict") for f in findings]
    top = top_finding(findings)
    return {
        "id": measurement.id,
        "variant_id": measurement.variant_id,
        "variant": variant_name,
        "when": measurement.created_at[:19].replace("T", " "),
        "kind": metrics.get("kind", ""),
        "ok": bool(metrics.get("ok", top is None)),
        "sentence": metrics.get("sentence", ""),
        "causes": verdicts.count(Verdict.CAUSE.value),
        "suspects": verdicts.count(Verdict.SUSPECT.value),
        "oks": verdicts.count(Verdict.OK.value),
        "cause": metrics.get("cause"),
        "top_check": top.get("check") if top else None,
        "top_fix": top.get("fix") if top else None,
        "after": after_text(top.get("after")) if top else "",
        "subject": measurement.context.get("subject", ""),
    }


def top_finding(findings: list[dict]) -> dict | None:
    """The first (top-ranked) finding when it is a cause or a suspect: what the diagnosis names as the most likely
    cause (an inconclusive one names nothing)."""
    if findings and findings[0].get("verdict") in (Verdict.CAUSE.value, Verdict.SUSPECT.value):
        return findings[0]
    return None


def finding_rows(measurement) -> list[dict]:
    """The findings of one diagnosis in their ranked order: verdict, check, title, fix, key evidence, after."""
    return [
        {
            "rank": rank,
            "verdict": f.get("verdict", ""),
            "check": f.get("check", ""),
            "title": f.get("title", ""),
            "fix": f.get("fix", "") if f.get("verdict") != Verdict.OK.value else "",
            "evidence": key_evidence(f.get("evidence") or {}),
            "after": after_text(f.get("after")),
            "pictures": list(f.get("pictures") or []),
        }
        for rank, f in enumerate(measurement.metrics.get("findings") or [], start=1)
    ]


def key_evidence(evidence: dict, limit: int = _EVIDENCE_ITEMS) -> dict:
    """The scalar numbers and short words of a finding's evidence (one level of nesting as `outer.inner`)."""
    picked = {}
    for key, value in evidence.items():
        inner = value.items() if isinstance(value, dict) else [("", value)]
        for sub, item in inner:
            if _is_scalar(item) and len(picked) < limit:
                picked[f"{key}.{sub}" if sub else str(key)] = item
    return picked


def _is_scalar(value) -> bool:
    return isinstance(value, bool | int | float) or (isinstance(value, str) and len(value) <= 80)


def after_text(after: dict | None) -> str:
    """'agreement 0.990, map50_95 0.512' (empty when no fix was measured)."""
    if not after:
        return ""
    return ", ".join(f"{k} {cell_text(v, 3)}" for k, v in after.items() if _is_scalar(v))


def diagnoses_sections(workspace: Workspace, variant_ids: Iterable[int] | None = None) -> list[Section]:
    """The report's "Diagnoses" section (one, per variant inside), or none when no diagnosis was recorded."""
    found = recorded_diagnoses(workspace, variant_ids)
    if not found:
        return []
    names = {v.id: v.name for v in workspace.ledger.variants()}
    rows = [diagnosis_row(m, names.get(m.variant_id, "")) for m in found]
    parts = [table_html(rows, ROW_COLUMNS, digits=3)]
    for variant_id in dict.fromkeys(m.variant_id for m in found):
        parts.append(f"<h3>Variant #{variant_id} {html.escape(names.get(variant_id, ''))}</h3>")
        parts += [diagnosis_html(workspace, m) for m in found if m.variant_id == variant_id]
    note = (
        "What the accuracy and speed doctors found, newest first. Each check gives a verdict: cause (red) is "
        "the most likely reason, suspect (amber) deserves a look, ok (green) was ruled out; after is the metric "
        "measured once the fix was applied. The pictures show the top finding: reference left, deployment right."
    )
    return [Section("Diagnoses", "".join(parts), note)]


def diagnosis_html(workspace: Workspace, measurement, *, pictures: bool = True) -> str:
    """One diagnosis: its sentence, its ranked findings (verdicts coloured) and the top finding's pictures."""
    row = diagnosis_row(measurement)
    findings = finding_rows(measurement)
    subject = f" of <code>{html.escape(str(row['subject']))}</code>" if row["subject"] else ""
    head = (
        f"<h4 style='margin:8px 0 2px'>{html.escape(str(row['kind']))} diagnosis #{row['id']}{subject}"
        f" <small style='color:#666'>{html.escape(row['when'])}</small></h4>"
        f"<p><b>{html.escape(str(row['sentence']))}</b></p>"
    )
    body = findings_table_html(findings)
    top = top_finding(measurement.metrics.get("findings") or [])
    if pictures and top and top.get("pictures"):
        body += pictures_html(top["pictures"], root=workspace.root)
    return f"<div class='diagnosis'>{head}{body}</div>"


def verdict_badge(verdict: str) -> str:
    background, colour = VERDICT_STYLE.get(verdict, ("#eee", "#333"))
    return (
        f"<span class='verdict verdict-{html.escape(verdict)}' style='background:{background};color:{colour};"
        f"font-weight:600;padding:0 .4em;border-radius:3px'>{html.escape(verdict)}</span>"
    )


def findings_table_html(findings: list[dict]) -> str:
    """The ranked findings as an HTML table; every text escaped, the verdict as a coloured badge."""
    if not findings:
        return "<p><em>no findings recorded</em></p>"
    columns = ["rank", "verdict", "check", "title", "fix", "evidence", "after"]
    head = "".join(f"<th>{c}</th>" for c in columns)
    body = "".join(
        f"<tr class='verdict-{html.escape(f['verdict'])}'><td>{f['rank']}</td><td>{verdict_badge(f['verdict'])}</td>"
        + "".join(f"<td>{html.escape(str(f[c]))}</td>" for c in ("check", "title", "fix"))
        + f"<td><small>{_evidence_text(f['evidence'])}</small></td><td>{html.escape(f['after'])}</td></tr>"
        for f in findings
    )
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _evidence_text(evidence: dict) -> str:
    return "<br>".join(f"{html.escape(k)}: {html.escape(cell_text(v, 3))}" for k, v in evidence.items())


def pictures_html(paths: Iterable[str], *, root: Path | str | None = None) -> str:
    """The pictures embedded as data URIs; a file that is missing, too big or no image is named, not embedded."""
    cells = []
    for name in paths:
        path = _locate(Path(name), root)
        caption = html.escape(path.name)
        embedded, problem = _data_uri(path)
        if embedded:
            cells.append(
                f'<figure><img alt="{caption}" style="max-width:100%" src="{embedded}">'
                f"<figcaption>{caption}</figcaption></figure>"
            )
        else:
            cells.append(f"<p class='missing'><em>picture {html.escape(str(name))} {problem}</em></p>")
    return f'<div class="grid">{"".join(cells)}</div>'


def _locate(path: Path, root: Path | str | None) -> Path:
    """A relative picture path is looked up under the workspace first, then from the working directory."""
    if not path.is_absolute() and root is not None and (Path(root) / path).is_file():
        return Path(root) / path
    return path


def _data_uri(path: Path) -> tuple[str, str]:
    """(data URI, '') for a JPEG or PNG file, else ('', why it is not shown)."""
    try:
        size = path.stat().st_size
        if size > MAX_PICTURE_BYTES:
            return "", f"is too large to embed ({size / 1e6:.1f} MB)"
        data = path.read_bytes()
    except OSError:
        return "", "is missing"
    mime = next((m for magic, m in _MAGIC.items() if data.startswith(magic)), None)
    if mime is None:
        return "", "is not a JPEG or PNG image"
    return f"data:{mime};base64,{base64.b64encode(data).decode()}", ""
