"""What a model card says, read from the ledger alone: the variant's details and lineage, its newest measurement of
each setting with that setting, the data it was trained and validated on, drift alerts and diagnoses, and what the
ledger cannot say (said to be unknown, never filled in).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import DatasetError, WorkbenchError
from ...store.records import Measurement, Variant
from ..diagnoses import diagnosis_row, recorded_diagnoses

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace

NOT_MEASURED = "not measured"
NOT_RECORDED = "not recorded in the ledger"
_LATENCY_SETTING = ("runtime", "precision", "threads", "batch", "imgsz")
_ACCURACY_SETTING = ("data_yaml", "split", "imgsz", "runtime", "precision", "images")
_PARITY_SETTING = ("parent_id", "runtime", "precision", "imgsz")
_FEW_IMAGES = 100  # below this many images, the card says the mAP is a rough figure


def card_sections(workspace: Workspace, variant_id: int) -> dict:
    """The sections of a recorded variant's model card (the `ModelCard` fields but the workspace and the time).

    Raises:
        WorkspaceError: the ledger has no such variant.
    """
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
    return {
        "details": details,
        "lineage": [_step(v) for v in chain],
        "intended_use": intended,
        "metrics": metrics,
        "evaluation": evaluation,
        "ethics": _ethics(),
        "limitations": _limitations(variant, metrics, intended, evaluation),
    }


def _details(workspace: Workspace, variant: Variant, chain: list[Variant], machines: dict) -> dict:
    names, trained_imgsz, names_note = _checkpoint_facts(workspace, chain)
    from ...measure.measure import static_imgsz

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


def _checkpoint_facts(workspace: Workspace, chain: list[Variant]) -> tuple[dict[int, str] | None, int | None, str]:
    """(class names, training imgsz, where they come from) of the nearest PyTorch ancestor's checkpoint."""
    for ancestor in reversed(chain):
        if ancestor.is_pytorch and ancestor.path:
            path = workspace.root / ancestor.path
            try:
                from ...models.checkpoints import load_checkpoint, training_imgsz

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


def _diagnoses(workspace: Workspace, variant_id: int) -> list[dict]:
    keep = ("id", "when", "kind", "ok", "sentence", "top_check", "top_fix", "after")
    return [{k: diagnosis_row(m)[k] for k in keep} for m in recorded_diagnoses(workspace, [variant_id])]


def _data_facts(data_yaml: str | None, split: str | None = None) -> dict:
    """What a recorded data YAML is: its classes and, for a generated dataset, the generator's manifest."""
    facts = {"data_yaml": data_yaml, "split": split, "readable": False, "names": None, "generated": None}
    if not data_yaml:
        return facts
    from ...data.checks import check_dataset

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
    from ...models.cards import read_card
    from ...models.sources import resolve

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
