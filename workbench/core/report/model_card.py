"""A model card (Mitchell et al., "Model Cards for Model Reporting") of one variant, drawn from the ledger alone.

Every figure is a ledger measurement, shown with the context it was measured in, its id and date; what the ledger
does not know is said to be unknown, never filled in. The markdown rounds (mAP to 4 decimals, milliseconds to 2);
`as_dict()` holds the values exactly as recorded.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import ConfigError, DatasetError, WorkbenchError
from ..store.atomic import staged
from ..store.ledger import now
from ..store.records import Measurement, Variant
from .diagnoses import diagnosis_row, recorded_diagnoses

NOT_MEASURED = "not measured"
NOT_RECORDED = "not recorded in the ledger"
_LATENCY_SETTING = ("runtime", "precision", "threads", "batch", "imgsz")
_ACCURACY_SETTING = ("data_yaml", "split", "imgsz", "runtime", "precision", "images")
_PARITY_SETTING = ("parent_id", "runtime", "precision", "imgsz")
_FEW_IMAGES = 100  # below this many images, the card says the mAP is a rough figure


@dataclass(frozen=True)
class ModelCard:
    """What the ledger knows of one variant, in the sections of a model card; `markdown()` renders it."""

    details: dict
    lineage: list[dict]
    intended_use: dict
    metrics: dict
    evaluation: dict
    ethics: list[str]
    limitations: list[str]
    workspace: str
    generated_at: str = field(default_factory=now)

    def as_dict(self) -> dict:
        return asdict(self)

    def markdown(self) -> str:
        return _card_markdown(self)

    def save(self, path: Path | str) -> Path:
        """Write the card atomically: JSON when `path` ends in .json, else markdown."""
        return write_card(self, path)


def model_card(workspace, variant_id: int) -> ModelCard:
    """The model card of a recorded variant, from the workspace's ledger.

    Args:
        workspace: a `Workspace` (or its folder).
        variant_id: the variant the card describes.
    Returns:
        the card: details and lineage, intended use, metrics with their context, evaluation data, drift alerts
        and diagnoses, ethical considerations and limitations.
    Raises:
        ConfigError: `variant_id` is not a whole number.
        WorkspaceError: the ledger has no such variant.
    """
    workspace = open_workspace(workspace)
    if isinstance(variant_id, bool) or not isinstance(variant_id, int):
        raise ConfigError(f"variant_id must be a whole number, got {variant_id!r}", "pass an id from the ledger")
    variant = workspace.variant(variant_id)
    chain = list(reversed(workspace.lineage(variant_id)))  # the source first
    recorded = workspace.ledger.measurements(variant_id=variant_id)
    machines = {f["id"]: f["data"] for f in workspace.ledger.fingerprints()}
    details = _details(workspace, variant, chain, machines)
    metrics = _metrics(recorded, machines)
    validated = [_data_facts(p, s) for p, s in dict.fromkeys((r["data_yaml"], r["split"]) for r in metrics["accuracy"])]
    trained, sources = _trained_on(chain)
    intended = _intended_use(details, trained, validated, sources)
    evaluation = {"data": validated, "drift": drift_summary(recorded), "diagnoses": _diagnoses(workspace, variant_id)}
    return ModelCard(
        details=details,
        lineage=[_step(v) for v in chain],
        intended_use=intended,
        metrics=metrics,
        evaluation=evaluation,
        ethics=_ethics(),
        limitations=_limitations(variant, metrics, intended, evaluation),
        workspace=str(workspace.root),
    )


def write_card(card, path: Path | str) -> Path:
    """Write a `ModelCard` or `DeploymentRecord` to `path` (staged, then renamed): JSON for .json, else markdown.

    Raises:
        ConfigError: `path` is a folder.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise ConfigError(f"{path} is a folder", "pass a file name, e.g. model-card.md")
    text = json.dumps(card.as_dict(), indent=2, default=str) + "\n" if path.suffix == ".json" else card.markdown()
    with staged(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


# -- reading the ledger ----------------------------------------------------------------------------------------------


def open_workspace(workspace):
    """A `Workspace` as given, or opened from its folder."""
    if isinstance(workspace, str | os.PathLike):
        from ..store.workspace import Workspace

        return Workspace(workspace)
    return workspace


def _details(workspace, variant: Variant, chain: list[Variant], machines: dict) -> dict:
    names, trained_imgsz, names_note = _checkpoint_facts(workspace, chain)
    from ..measure.measure import static_imgsz

    static = static_imgsz(variant)
    if static:
        input_size = f"{static} x {static} (fixed at export)"
    elif variant.params.get("dynamic"):
        input_size = "dynamic (exported with dynamic=True)"
    else:
        input_size = f"any multiple of 32; trained at {trained_imgsz}" if trained_imgsz else NOT_RECORDED
    present = bool(variant.path) and (workspace.root / variant.path).exists()
    made_on = machines.get(variant.fingerprint_id) or {}
    return {
        "name": variant.name,
        "id": variant.id,
        "file": variant.path,
        "file_present": present,
        "format": variant.format.value if variant.format else None,
        "sha256": variant.sha256,
        "size_bytes": variant.size_bytes,
        "classes": names,
        "classes_note": names_note,
        "input_size": input_size,
        "created_at": variant.created_at,
        "made_with": {k: v for k, v in (made_on.get("libraries") or {}).items() if v},
    }


def _checkpoint_facts(workspace, chain: list[Variant]) -> tuple[dict[int, str] | None, int | None, str]:
    """(class names, training imgsz, where they come from) of the nearest PyTorch ancestor's checkpoint."""
    for ancestor in reversed(chain):
        if ancestor.is_pytorch and ancestor.path:
            path = workspace.root / ancestor.path
            try:
                from ..models.checkpoints import load_checkpoint, training_imgsz

                model = load_checkpoint(path)
            except (WorkbenchError, OSError) as exc:
                return None, ancestor.params.get("train_imgsz"), f"the checkpoint of #{ancestor.id} did not load: {exc}"
            where = f"from the checkpoint of variant #{ancestor.id}"
            return dict(model.names), training_imgsz(model) or ancestor.params.get("train_imgsz"), where
    return None, None, "no PyTorch checkpoint in the lineage to read them from"


def _step(variant: Variant) -> dict:
    return {
        "id": variant.id,
        "name": variant.name,
        "step": variant.step,
        "format": variant.format.value if variant.format else None,
        "created_at": variant.created_at,
        "params": params_line(variant.params),
    }


def params_line(params: Mapping, limit: int = 400) -> str:
    """A step's parameters in one line (`key=value, ...`); long lists and nested tables are counted, not listed."""
    text = ", ".join(f"{k}={_short(v)}" for k, v in params.items()) or "(no parameters)"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _short(value, depth: int = 0) -> str:
    if isinstance(value, Mapping):
        if depth or len(value) > 8:
            return f"{{{len(value)} entries}}"
        return "{" + ", ".join(f"{k}={_short(v, 1)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        if len(value) > 6 or any(isinstance(v, Mapping | list | tuple) for v in value):
            return f"[{len(value)} items]"
        return "[" + ", ".join(_short(v, 1) for v in value) + "]"
    text = str(value)
    return text if len(text) <= 72 else text[:71] + "…"


def _metrics(recorded: list[Measurement], machines: dict) -> dict:
    ok = [m for m in recorded if m.ok]
    latency = _newest(ok, "latency", _LATENCY_SETTING, machine=True)
    accuracy = _newest(ok, "accuracy", _ACCURACY_SETTING)
    parity = _newest(ok, "parity", _PARITY_SETTING)
    shown = len(latency) + len(accuracy) + len(parity)
    return {
        "accuracy": [_accuracy_row(m) for m in accuracy],
        "latency": [_latency_row(m, machines) for m in latency],
        "parity": [_parity_row(m) for m in parity],
        "failed": [_failed_row(m) for m in recorded if not m.ok and m.kind in ("latency", "accuracy", "parity")],
        "superseded": sum(1 for m in ok if m.kind in ("latency", "accuracy", "parity")) - shown,
    }


def _newest(found: list[Measurement], kind: str, setting: tuple[str, ...], *, machine: bool = False) -> list:
    """The newest measurement of `kind` per setting (and machine), oldest setting first."""
    newest: dict[tuple, Measurement] = {}
    for m in (m for m in found if m.kind == kind):
        key = tuple(str(m.context.get(k)) for k in setting) + ((m.fingerprint_id,) if machine else ())
        newest.pop(key, None)
        newest[key] = m
    return sorted(newest.values(), key=lambda m: m.id)


def _measured(m: Measurement) -> dict:
    return {"measurement_id": m.id, "measured_at": m.created_at}


def _row(m: Measurement, metrics: tuple[str, ...], context: tuple[str, ...], **extra) -> dict:
    """A measurement's figures (metrics) and their context, as recorded, with its id and date."""
    return {
        **{k: m.metrics.get(k) for k in metrics},
        **{k: m.context.get(k) for k in context},
        **extra,
        **_measured(m),
    }


def _accuracy_row(m: Measurement) -> dict:
    figures = ("map50_95", "map50", "precision", "recall", "images", "instances")
    context = ("data_yaml", "split", "imgsz", "runtime", "conf", "iou")
    per_class = m.metrics.get("per_class") or []
    return _row(m, figures, context, compute_precision=m.context.get("precision"), per_class=per_class)


def _latency_row(m: Measurement, machines: dict) -> dict:
    cpu = (machines.get(m.fingerprint_id) or {}).get("cpu") or {}
    figures, context = ("p50_ms", "p90_ms", "p99_ms", "runs", "stable"), _LATENCY_SETTING
    return _row(m, figures, context, cpu=cpu.get("model"), cores=cpu.get("usable_cores"))


def _parity_row(m: Measurement) -> dict:
    figures = ("verdict", "match_rate", "mean_iou", "max_abs_diff", "cosine", "images", "reason")
    return _row(m, figures, ("parent_id", "parent_runtime", "runtime", "precision", "imgsz"))


def _failed_row(m: Measurement) -> dict:
    return _row(m, ("error",), ("runtime",), kind=m.kind)


def drift_summary(recorded: list[Measurement], *, since: str | None = None) -> dict:
    """The drift alerts among `recorded` (those at or after `since`, an ISO time): count, shifts named, latest."""
    alerts = [m for m in recorded if m.kind == "drift_alert" and (since is None or m.created_at >= since)]
    latest = alerts[-1] if alerts else None
    return {
        "count": len(alerts),
        "shifts": dict(Counter(str(m.metrics.get("looks_like")) for m in alerts).most_common()),
        "latest": None
        if latest is None
        else {
            "sentence": latest.metrics.get("sentence"),
            "looks_like": latest.metrics.get("looks_like"),
            "drifted": latest.metrics.get("drifted") or [],
            "reference": latest.context.get("reference"),
            **_measured(latest),
        },
    }


def _diagnoses(workspace, variant_id: int) -> list[dict]:
    keep = ("id", "when", "kind", "ok", "sentence", "top_check", "top_fix", "after")
    return [{k: diagnosis_row(m)[k] for k in keep} for m in recorded_diagnoses(workspace, [variant_id])]


def _data_facts(data_yaml: str | None, split: str | None = None) -> dict:
    """What a recorded data YAML is: its classes and, for a generated dataset, the generator's manifest."""
    facts = {"data_yaml": data_yaml, "split": split, "readable": False, "names": None, "generated": None}
    if not data_yaml:
        return facts
    from ..data.checks import check_dataset

    try:
        summary = check_dataset(data_yaml, splits=())  # reads the YAML and its classes; looks at no image
    except (DatasetError, OSError) as exc:
        return {**facts, "problem": getattr(exc, "problem", str(exc))}
    facts.update(readable=True, names=summary.names)
    manifest = Path(data_yaml).with_name("manifest.json")
    try:
        made = json.loads(manifest.read_text()) if manifest.is_file() else {}
    except (OSError, ValueError):
        made = {}
    if isinstance(made, dict) and made.get("generator") == "workbench.shapes":
        facts["generated"] = {k: made.get(k) for k in ("generator", "version", "config", "instances", "shift")}
    return facts


def data_text(facts: Mapping) -> str:
    """One phrase for a dataset: its YAML, split and what it is (generated shapes and their settings)."""
    where = f"`{facts.get('data_yaml')}`" + (f" ({facts['split']} split)" if facts.get("split") else "")
    made = facts.get("generated")
    if made:
        config = made.get("config") or {}
        shift = f", domain shift '{made['shift']}'" if made.get("shift") else ""
        where += (
            f": the workbench's generated shapes dataset (seed {config.get('seed')}, {config.get('train')} train / "
            f"{config.get('val')} val images of {config.get('imgsz')} px{shift})"
        )
    elif facts.get("problem"):
        where += f" (no longer readable: {facts['problem']})"
    return where


def _trained_on(chain: list[Variant]) -> tuple[list[str], list[str]]:
    """What the ledger (and a source's own card, when its sha256 matches) says each step learnt from: one line per
    step, and the short names of the training data for the intended-use sentence."""
    said, sources = [], []
    for variant in chain:
        if variant.step in ("source", "import"):
            line, source = _source_training(variant)
            said.append(line)
            sources.append(source)
            continue
        data = variant.params.get("data") or variant.params.get("data_yaml")
        calibration = variant.params.get("calibration")
        if isinstance(calibration, Mapping):
            said.append(
                f"#{variant.id} {variant.step}: calibrated on {calibration.get('count')} images of the "
                f"{calibration.get('split')} split (sha256 {str(calibration.get('sha256'))[:12]})"
            )
        elif data:
            said.append(f"#{variant.id} {variant.step}: used data {data_text(_data_facts(str(data)))}")
        epochs = variant.params.get("epochs") or variant.params.get("finetune_epochs")
        if epochs and not data:
            said.append(f"#{variant.id} {variant.step} trained {epochs} epochs; its training data is {NOT_RECORDED}")
            sources.append(f"data {NOT_RECORDED} (step #{variant.id} {variant.step})")
    return said, sources


def _source_training(variant: Variant) -> tuple[str, str]:
    card = _source_card(variant)
    dataset = (card or {}).get("dataset") or {}
    if not isinstance(dataset, Mapping) or not dataset.get("name"):
        spec = variant.params.get("source", variant.name)
        line = f"#{variant.id} {variant.step} ({spec}): its training data is {NOT_RECORDED}"
        return line + " (no card with a matching sha256 beside the model file)", f"data {NOT_RECORDED}"
    metrics = card.get("metrics") or {}
    scores = ", ".join(f"{k} {metrics[k]}" for k in ("map50_95", "map50") if k in metrics)
    line = (
        f"#{variant.id} {variant.step}: trained on {dataset['name']} (seed {dataset.get('seed')}, "
        f"{dataset.get('train')} train / {dataset.get('val')} val images of {dataset.get('imgsz')} px), as the card "
        f"shipped with {card.get('model')} says (its sha256 matches)"
    )
    if scores:
        line += (
            f"; that card reports {scores} on its {metrics.get('split', 'val')} split at {metrics.get('imgsz')} px "
            "(not a ledger measurement)"
        )
    return line, f"{dataset['name']} (per the card of {card.get('model')})"


def _source_card(variant: Variant) -> dict | None:
    """The JSON card beside the source model file, when its sha256 is this variant's."""
    from ..models.cards import read_card
    from ..models.sources import resolve

    try:
        path = Path(resolve(variant.params.get("source", "")).ref)
        card = read_card(path)
    except (WorkbenchError, OSError, ValueError):
        return None
    return card if isinstance(card, dict) and card.get("sha256") == variant.sha256 else None


def _intended_use(details: dict, trained: list[str], validated: list[dict], sources: list[str]) -> dict:
    names = details["classes"]
    classes = ", ".join(names.values()) if names else None
    checked = "; ".join(data_text(d) for d in validated)
    made = " and ".join(sources) if sources else f"data {NOT_RECORDED}"
    if checked:
        statement = f"Trained on {made}, and validated only on {checked}; not evaluated on any other data."
    else:
        statement = f"Trained on {made}; this variant's accuracy is {NOT_MEASURED} in this ledger."
    return {
        "task": f"object detection of {len(names)} classes: {classes}" if names else "object detection",
        "statement": statement,
        "trained_on": trained,
        "validated_on": validated,
        "out_of_scope": [
            f"classes other than {classes}: the model cannot detect them" if names else "classes: not recorded",
            "images unlike the data above (other cameras, scenes, lighting, object sizes): not evaluated",
            "input sizes, runtimes, precisions and machines other than those under Metrics: not measured",
            "any use where a missed or false detection harms people: not evaluated for it",
        ],
    }


def _ethics() -> list[str]:
    return [
        "The ledger records nothing about people, consent, privacy or fairness for this model; this card can say "
        "nothing about them. What follows is generic.",
        "A detector's errors fall unevenly across conditions (lighting, size, occlusion, the camera); the per-class "
        "figures are the only breakdown measured here.",
        "Check images from the place it is deployed before relying on it, and keep a person in the loop where a "
        "missed or false detection matters.",
    ]


def _limitations(variant, metrics, intended, evaluation) -> list[str]:
    said = []
    accuracy, latency = metrics["accuracy"], metrics["latency"]
    if not accuracy:
        said.append(f"Accuracy: {NOT_MEASURED} for this variant.")
    for row in accuracy:
        if (row.get("images") or 0) < _FEW_IMAGES:
            said.append(
                f"Accuracy #{row['measurement_id']} comes from {row.get('images')} images ({row.get('instances')} "
                "instances): with this few, mAP is a rough figure."
            )
    if not latency:
        said.append(f"Latency: {NOT_MEASURED} for this variant.")
    else:
        machines = sorted({str(r["cpu"]) for r in latency})
        said.append(f"Latency was measured only on: {', '.join(machines)}; other hardware is {NOT_MEASURED}.")
    said += [
        f"Latency #{r['measurement_id']} did not settle (its timing windows disagreed beyond their tolerance)."
        for r in latency
        if r.get("stable") is False
    ]
    if variant.step in ("export", "quantize") and not metrics["parity"]:
        said.append(f"Parity with its parent: {NOT_MEASURED}.")
    if metrics["failed"]:
        said.append(f"{len(metrics['failed'])} measurement(s) of this variant failed (listed under Metrics).")
    if any(NOT_RECORDED in t for t in intended["trained_on"]):
        said.append(f"Part of its training data is {NOT_RECORDED} (see Intended use).")
    drift = evaluation["drift"]
    if drift["count"]:
        said.append(
            f"{drift['count']} drift alert(s): production traffic moved away from the reference data; "
            "the accuracy above may not hold there."
        )
    return said


# -- markdown --------------------------------------------------------------------------------------------------------


def when(iso: str | None) -> str:
    """A ledger time as 'YYYY-MM-DD HH:MM:SS UTC'."""
    if not iso:
        return "unknown"
    return iso[:19].replace("T", " ") + (" UTC" if iso.endswith("+00:00") else "")


def cell(value, digits: int = 4) -> str:
    """A value for a markdown table cell: floats rounded, None as '-', pipes escaped."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = f"{value:.{digits}f}" if isinstance(value, float) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def table(rows: list[dict], columns: list[tuple[str, str, int]]) -> list[str]:
    """Markdown table lines of `columns` (key, header, float digits)."""
    lines = ["| " + " | ".join(h for _, h, _ in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(k), d) for k, _, d in columns) + " |" for r in rows]
    return lines


ACCURACY_COLUMNS = [
    ("map50_95", "mAP50-95", 4), ("map50", "mAP50", 4), ("precision", "P", 4), ("recall", "R", 4),
    ("images", "images", 0), ("instances", "instances", 0), ("split", "split", 0), ("imgsz", "imgsz", 0),
    ("runtime", "runtime", 0), ("compute_precision", "precision", 0), ("measurement_id", "#", 0),
    ("measured_at", "measured", 0),
]  # fmt: skip
LATENCY_COLUMNS = [
    ("p50_ms", "p50 ms", 2), ("p99_ms", "p99 ms", 2), ("runs", "runs", 0), ("runtime", "runtime", 0),
    ("precision", "precision", 0), ("threads", "threads", 0), ("batch", "batch", 0), ("imgsz", "imgsz", 0),
    ("cpu", "CPU", 0), ("cores", "cores", 0), ("measurement_id", "#", 0), ("measured_at", "measured", 0),
]  # fmt: skip
PARITY_COLUMNS = [
    ("verdict", "verdict", 0), ("match_rate", "match rate", 4), ("mean_iou", "mean IoU", 4),
    ("max_abs_diff", "max abs diff", 6), ("parent_id", "parent #", 0), ("parent_runtime", "parent runtime", 0),
    ("runtime", "runtime", 0), ("imgsz", "imgsz", 0), ("measurement_id", "#", 0), ("measured_at", "measured", 0),
]  # fmt: skip


def dated_rows(rows: list[dict]) -> list[dict]:
    return [{**r, "measured_at": when(r.get("measured_at"))} for r in rows]


def _card_markdown(card: ModelCard) -> str:
    d, use, m, ev = card.details, card.intended_use, card.metrics, card.evaluation
    names = d["classes"]
    size = f"{d['size_bytes']} bytes ({d['size_bytes'] / 1e6:.2f} MB)" if d["size_bytes"] is not None else "-"
    lines = [
        f"# Model card: {d['name']} (variant #{d['id']})",
        "",
        f"_Generated {when(card.generated_at)} from the ledger of `{card.workspace}`. Every figure is a ledger "
        "measurement (its # and date given); mAP is rounded to 4 decimals and milliseconds to 2 here, the card's "
        "JSON holds them as recorded._",
        "",
        "## Model details",
        "",
        f"- **Name**: {d['name']}",
        f"- **Variant id**: {d['id']}",
        f"- **File**: `{d['file']}`" + ("" if d["file_present"] else " (missing from the workspace)")
        if d["file"]
        else "- **File**: none recorded",
        f"- **Format**: {d['format'] or '-'}",
        f"- **sha256**: `{d['sha256'] or '-'}`",
        f"- **Size**: {size}",
        f"- **Classes**: {', '.join(f'{k}: {v}' for k, v in names.items())} ({d['classes_note']})"
        if names
        else f"- **Classes**: {NOT_RECORDED} ({d['classes_note']})",
        f"- **Input size**: {d['input_size']}",
        f"- **Created**: {when(d['created_at'])}",
        f"- **Environment when recorded**: {', '.join(f'{k} {v}' for k, v in d['made_with'].items()) or NOT_RECORDED}",
        "",
        "### Lineage (source first)",
        "",
    ]
    lines += [
        f"{i}. #{s['id']} **{s['step']}** `{s['name']}` ({s['format'] or '-'}, {when(s['created_at'])}): {s['params']}"
        for i, s in enumerate(card.lineage, 1)
    ]
    lines += ["", "## Intended use", "", f"- **Task**: {use['task']}", f"- {use['statement']}", "- **Trained on**:"]
    lines += [f"  - {t}" for t in use["trained_on"]] or [f"  - {NOT_RECORDED}"]
    lines += ["- **Out of scope**:"] + [f"  - {t}" for t in use["out_of_scope"]]
    lines += ["", "## Metrics", "", "Each figure holds for the context in its row, and nowhere else.", ""]
    for title, rows, columns in (
        ("Accuracy", m["accuracy"], ACCURACY_COLUMNS),
        ("Latency", m["latency"], LATENCY_COLUMNS),
        ("Parity with its parent", m["parity"], PARITY_COLUMNS),
    ):
        lines += [f"### {title}", ""] + (table(dated_rows(rows), columns) if rows else [f"{title}: {NOT_MEASURED}."])
        lines.append("")
        if title == "Accuracy" and rows and rows[-1]["per_class"]:
            lines += [f"Per class (measurement #{rows[-1]['measurement_id']}):", ""]
            lines += table(rows[-1]["per_class"], [("class", "class", 0), *ACCURACY_COLUMNS[:6]]) + [""]
    if m["superseded"]:
        lines += [f"{m['superseded']} earlier measurement(s) of the same settings are in the ledger.", ""]
    if m["failed"]:
        lines += ["### Failed measurements", ""]
        lines += [f"- #{r['measurement_id']} {r['kind']} ({when(r['measured_at'])}): {r['error']}" for r in m["failed"]]
        lines.append("")
    lines += ["## Evaluation data", ""]
    lines += [f"- {data_text(x)}" for x in ev["data"]] or [f"- none: accuracy {NOT_MEASURED}"]
    lines += ["", "## Caveats and recommendations", "", *drift_lines(ev["drift"]), ""]
    lines += ["### Troubleshooting diagnoses", ""]
    lines += [
        f"- #{x['id']} {x['kind']} ({x['when']} UTC): {x['sentence']}"
        + (f" Top cause: {x['top_check']}; fix: {x['top_fix']}." if x["top_check"] else "")
        for x in ev["diagnoses"]
    ] or ["- none recorded"]
    lines += ["", "## Ethical considerations", ""] + [f"- {t}" for t in card.ethics]
    lines += ["", "## Limitations", ""] + [f"- {t}" for t in card.limitations] + [""]
    return "\n".join(lines)


def drift_lines(drift: Mapping) -> list[str]:
    """The drift alerts as markdown lines: how many, the shifts named, the latest one's sentence."""
    if not drift["count"]:
        return ["- Drift alerts: none recorded against this variant."]
    shifts = ", ".join(f"{name} x{n}" for name, n in drift["shifts"].items())
    latest = drift["latest"]
    return [
        f"- Drift alerts: {drift['count']} recorded (shifts named: {shifts}).",
        f"- Latest: #{latest['measurement_id']} ({when(latest['measured_at'])}): {latest['sentence']}",
    ]
