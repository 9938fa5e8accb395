"""Per-layer quantization error of an ONNX QDQ (INT8) model against its float model, and the layers to keep in float.

ONNX Runtime's `qdq_loss_debug` compares a float model's and its QDQ model's tensors one by one; it matches them by
the names ONNX Runtime's own quantizer gives (`X_DequantizeLinear_Output`, `W_quantized`), so NNCF's names
(`dq_output_X_1`, `q_output_W_1`) are first rewritten to those in a copy of the model. Each node with quantized
inputs is then scored by the worst SQNR (dB, lower is worse) among them: an activation's before and after its
quantize-dequantize pair, a weight's float values against its dequantized int8 ones. The worst `k` nodes
(k = 1, 2, 4, 8 in turn) are kept in float by bypassing their quantize-dequantize pairs (float weights from the
float model), and the agreement with the reference is measured after each: the first `k` that brings it over the
threshold the other checks use names those nodes as the cause, with NNCF's `ignored_scope` as the fix.
"""

from __future__ import annotations

import math
import shutil
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ...errors import WorkbenchError
from ..findings import Finding, Verdict
from .run import AGREE

LAYER_IMAGES = 4  # images the activations are compared on
KEEP_COUNTS = (1, 2, 4, 8)  # how many of the worst nodes are kept in float, in turn
SHOWN = 10  # nodes listed in the evidence
MIN_BUDGET_S = 5.0  # below this much time left the analysis is not started
QDQ = ("QuantizeLinear", "DequantizeLinear")
_DQ_OUT, _QUANTIZED = "_DequantizeLinear_Output", "_quantized"  # ONNX Runtime's names (quant_utils)


class LayerAnalysisError(WorkbenchError):
    """The per-layer analysis cannot compare these two models."""


@dataclass(frozen=True)
class LayerError:
    """One node's quantization error: the worst of its quantized inputs."""

    node: str  # the node's name, the same in the float graph: what NNCF's ignored_scope names
    op: str
    sqnr_db: float  # signal to quantization noise of its worst quantized input (dB; lower is worse)
    worst: str  # that input: "weight <name>" or "activation <name>"
    float_sqnr_db: float | None  # for an activation: the quantized model's against the float model's (accumulated)

    def as_dict(self) -> dict:
        return {
            "node": self.node,
            "op": self.op,
            "sqnr_db": _rounded(self.sqnr_db),
            "worst": self.worst,
            "float_sqnr_db": _rounded(self.float_sqnr_db),
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 2)


def is_qdq(path: Path | str) -> bool:
    """Whether the ONNX file holds quantize-dequantize pairs."""
    import onnx

    return any(node.op_type in QDQ for node in onnx.load(str(path), load_external_data=False).graph.node)


def same_graph(qdq, float_model) -> bool:
    """Whether `float_model` is the graph `qdq` was quantized from: every non-QDQ node by name, the same input."""
    names = {node.name for node in float_model.graph.node}
    if any(node.op_type not in QDQ and node.name not in names for node in qdq.graph.node):
        return False
    return _input_dims(qdq) == _input_dims(float_model)


def _input_dims(model) -> list:
    return [[d.dim_value or d.dim_param for d in i.type.tensor_type.shape.dim] for i in model.graph.input]


def _producers(graph) -> dict:
    return {out: node for node in graph.node for out in node.output}


def named_for_ort(qdq, float_model):
    """A copy of `qdq` with NNCF's QDQ tensor names rewritten to ONNX Runtime's, and what each dequantized tensor
    the compute nodes read is: ("activation", X) or ("weight", W), X and W named as in the float model."""
    import onnx

    model = onnx.ModelProto()
    model.CopyFrom(qdq)
    graph, producer = model.graph, _producers(model.graph)
    initializers = {init.name: init for init in graph.initializer}
    renames, meaning, seen = {}, {}, Counter()
    for node in graph.node:
        if node.op_type != "DequantizeLinear":
            continue
        source = producer.get(node.input[0])
        if source is not None and source.op_type == "QuantizeLinear":
            x = source.input[0]
            name = x + _DQ_OUT + (f"_{seen[x]}" if seen[x] else "")
            seen[x] += 1
            renames[node.output[0]] = name
            meaning[name] = ("activation", x)
        elif node.input[0] in initializers:
            weight = _float_weight(node.output[0], graph, float_model)
            if weight is not None and weight + _QUANTIZED not in initializers:
                initializers[node.input[0]].name = weight + _QUANTIZED
                renames[node.input[0]] = weight + _QUANTIZED
                meaning[node.output[0]] = ("weight", weight)
    for node in graph.node:
        for index, name in enumerate(node.input):
            node.input[index] = renames.get(name, name)
        for index, name in enumerate(node.output):
            node.output[index] = renames.get(name, name)
    return model, meaning


def _float_weight(dequantized: str, graph, float_model) -> str | None:
    """The float model's initializer that the node reading `dequantized` reads at the same input."""
    float_nodes = {node.name: node for node in float_model.graph.node}
    float_inits = {init.name for init in float_model.graph.initializer}
    for node in graph.node:
        if dequantized in node.input and node.name in float_nodes:
            name = float_nodes[node.name].input[list(node.input).index(dequantized)]
            return name if name in float_inits else None
    return None


def layer_errors(qdq_path: Path, float_path: Path, batches: list[np.ndarray], folder: Path) -> list[LayerError]:
    """Every node with quantized inputs, the worst first, from `qdq_loss_debug` on `batches` (model inputs).

    Raises:
        LayerAnalysisError: `float_path` is not the float graph `qdq_path` was quantized from.
    """
    import onnx
    from onnxruntime.quantization import qdq_loss_debug as debug

    qdq, float_model = onnx.load(str(qdq_path)), onnx.load(str(float_path))
    if not same_graph(qdq, float_model):
        raise LayerAnalysisError(
            f"{Path(float_path).name} is not the float graph {Path(qdq_path).name} was quantized from",
            "pass the float ONNX export the QDQ model was made from",
        )
    folder.mkdir(parents=True, exist_ok=True)
    named, meaning = named_for_ort(qdq, float_model)
    named_path, float_copy = folder / "qdq-named.onnx", folder / "float.onnx"
    onnx.save(named, str(named_path))
    shutil.copy2(float_path, float_copy)  # ONNX Runtime writes shape-inferred copies beside the model it reads
    activations = {x for kind, x in meaning.values() if kind == "activation"}
    readers = sorted({n.op_type for n in float_model.graph.node if activations & set(n.input)})
    debug.modify_model_output_intermediate_tensors(named_path, folder / "qdq-all.onnx", op_types_for_saving=list(QDQ))
    debug.modify_model_output_intermediate_tensors(float_copy, folder / "float-all.onnx", op_types_for_saving=readers)
    feeds = [{float_model.graph.input[0].name: batch} for batch in batches]
    matched = debug.create_activation_matching(
        debug.collect_activations(str(folder / "qdq-all.onnx"), feeds),
        debug.collect_activations(str(folder / "float-all.onnx"), feeds),
    )
    for match in matched.values():
        match.setdefault("float", [])
    activation_errors = debug.compute_activation_error(matched)
    weight_errors = debug.compute_weight_error(debug.create_weight_matching(str(float_copy), str(named_path)))
    return _ranked(named, meaning, activation_errors, weight_errors)


def _ranked(named, meaning: dict, activation_errors: dict, weight_errors: dict) -> list[LayerError]:
    rows = []
    for node in named.graph.node:
        if node.op_type in QDQ:
            continue
        scored = []
        for name in node.input:
            kind, tensor = meaning.get(name, (None, None))
            if kind == "activation" and tensor in activation_errors:
                errors = activation_errors[tensor]
                scored.append((errors["qdq_err"], f"activation {tensor}", errors.get("xmodel_err")))
            elif kind == "weight" and tensor in weight_errors:
                scored.append((weight_errors[tensor], f"weight {tensor}", None))
        if scored:
            sqnr, worst, across = min(scored, key=lambda s: _worst_first(s[0]))
            rows.append(LayerError(node.name, node.op_type, float(sqnr), worst, across))
    return sorted(rows, key=lambda row: (_worst_first(row.sqnr_db), row.node))


def _worst_first(sqnr: float) -> float:
    return sqnr if math.isfinite(sqnr) else -math.inf  # a NaN or overflow is as bad as it gets


def keep_in_float(qdq, float_model, nodes) -> object:
    """A copy of `qdq` in which `nodes` read float inputs: their quantize-dequantize pairs are bypassed, and a
    weight stored in int8 is replaced by the float model's."""
    import onnx

    model = onnx.ModelProto()
    model.CopyFrom(qdq)
    graph, producer, wanted = model.graph, _producers(model.graph), set(nodes)
    float_nodes = {node.name: node for node in float_model.graph.node}
    float_inits = {init.name: init for init in float_model.graph.initializer}
    present = {init.name for init in graph.initializer}
    for node in graph.node:
        if node.name not in wanted:
            continue
        for index, name in enumerate(node.input):
            dequantize = producer.get(name)
            if dequantize is None or dequantize.op_type != "DequantizeLinear":
                continue
            source = producer.get(dequantize.input[0])
            if source is not None and source.op_type == "QuantizeLinear":
                node.input[index] = source.input[0]
                continue
            weight = float_nodes[node.name].input[index]
            if weight not in present:
                graph.initializer.append(float_inits[weight])
                present.add(weight)
            node.input[index] = weight
    _prune(graph)
    return model


def _prune(graph) -> None:
    """Drop the quantize-dequantize nodes and initializers nothing reads any more."""
    while True:
        read = {name for node in graph.node for name in node.input} | {out.name for out in graph.output}
        dead = [node for node in graph.node if node.op_type in QDQ and not set(node.output) & read]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    read = {name for node in graph.node for name in node.input}
    for init in [init for init in graph.initializer if init.name not in read]:
        graph.initializer.remove(init)


def layers_check(
    qdq_path: Path,
    float_path: Path,
    batches: list[np.ndarray],
    agreement_of,
    *,
    before: float,
    folder: Path,
    budget_s: float = 60.0,
) -> Finding:
    """Rank the QDQ model's nodes by quantization error and keep the worst in float until it agrees again.

    Args:
        qdq_path, float_path: the quantized ONNX model and the float ONNX graph it was quantized from.
        batches: model inputs (the deployment's images, preprocessed as the reference does).
        agreement_of: path of an ONNX model -> its agreement with the reference on the doctor's images.
        before: the quantized model's own agreement.
        folder: scratch folder for the rewritten models.
    Returns:
        a "quantized layers" finding: cause when keeping k nodes in float brings the agreement to AGREE or above
        (`after` holds it), suspect otherwise; the evidence lists the worst nodes and each attempt.
    """
    import onnx

    start = time.monotonic()
    ranked = layer_errors(Path(qdq_path), Path(float_path), batches, folder)
    qdq, float_model = onnx.load(str(qdq_path)), onnx.load(str(float_path))
    evidence = {
        "float_model": Path(float_path).name,
        "images": len(batches),
        "error": "SQNR in dB of each node's worst quantized input (onnxruntime qdq_loss_debug); lower is worse",
        "layers": [row.as_dict() for row in ranked[:SHOWN]],
        "quantized_nodes": len(ranked),
        "agreement_before": round(before, 4),
        "kept_in_float": [],
    }
    for count in [k for k in KEEP_COUNTS if k <= len(ranked)]:
        if time.monotonic() - start > budget_s:
            evidence["kept_in_float"].append({"keep": count, "skipped": f"past the {budget_s:g} s budget"})
            break
        names = [row.node for row in ranked[:count]]
        out = folder / f"keep{count}.onnx"
        onnx.save(keep_in_float(qdq, float_model, names), str(out))
        agreement = float(agreement_of(out))
        evidence["kept_in_float"].append({"keep": count, "nodes": names, "agreement": round(agreement, 4)})
        if agreement >= AGREE:
            return _restored(names, agreement, before, evidence)
    return _not_restored(ranked, evidence)


def _restored(names: list[str], agreement: float, before: float, evidence: dict) -> Finding:
    return Finding(
        "quantized layers",
        Verdict.CAUSE,
        f"the INT8 quantization of {len(names)} layer(s) breaks the model: with {', '.join(names)} kept in float "
        f"the artifact agrees with the reference again ({agreement:.3f}, was {before:.3f})",
        f"keep these layers in float: ignored_scope names={names} (nncf.quantize(..., "
        f"ignored_scope=nncf.IgnoredScope(names=[...]))), or re-calibrate and check their ranges",
        "int8_quantization",
        evidence,
        {"agreement": round(agreement, 4), "kept_in_float": names},
        strength=0.9,
    )


def _not_restored(ranked: list[LayerError], evidence: dict) -> Finding:
    tried = [t for t in evidence["kept_in_float"] if "agreement" in t]
    best = max((t["agreement"] for t in tried), default=evidence["agreement_before"])
    most = tried[-1]["keep"] if tried else 0
    return Finding(
        "quantized layers",
        Verdict.SUSPECT,
        f"keeping the {most} layer(s) with the largest quantization error in float does not restore agreement "
        f"(best {best:.3f}): the error is spread over many layers",
        "re-quantize with calibration images like the production ones (a few hundred); the worst layers are in "
        "the evidence",
        "int8_quantization",
        evidence,
        strength=0.5,
    )


def quantized_layers(
    finding: Finding, own, reference_detector, weights, images, ref_dets, folder: Path, budget_s: float
) -> Finding:
    """`finding` (the re-export check's, for an INT8 deployment) with the per-layer analysis added: its evidence
    under "layers"; when keeping layers in float restores agreement, that finding's title, fix and `after`."""
    from ...models.detector import Detector, prepare
    from ...models.runners import open_runner
    from .pipeline import _safe
    from .run import differences, run_on

    artifact = Path(own.artifact)
    if artifact.suffix != ".onnx" or not is_qdq(artifact):
        why = "the per-layer analysis reads ONNX QDQ models; quantize the ONNX export the same way to locate them"
        return replace(finding, evidence={**finding.evidence, "layers": f"not run: {why}"})
    if budget_s < MIN_BUDGET_S:
        return replace(finding, evidence={**finding.evidence, "layers": "not run: no time left in the budget"})
    started = time.monotonic()
    float_path = _float_model(artifact, reference_detector, weights, own.imgsz, folder)
    budget_s -= time.monotonic() - started
    if float_path is None:
        why = "no float ONNX of the same graph (the reference, or a re-export of its weights at the same size)"
        return replace(finding, evidence={**finding.evidence, "layers": f"not run: {why}"})

    def agreement_of(path: Path) -> float:
        detector = Detector(replace(own, artifact=path), open_runner(path))
        return differences(ref_dets, run_on(_safe(detector), images))["agreement"]

    pre = reference_detector.spec.preprocessing
    batches = [prepare(image, own.imgsz, pre).batch for image in images[:LAYER_IMAGES]]
    before = finding.evidence.get("alone_agreement", 0.0)
    layers = layers_check(artifact, float_path, batches, agreement_of, before=before, folder=folder, budget_s=budget_s)
    summary = {"verdict": layers.verdict.value, "title": layers.title, **layers.evidence}
    evidence = {**finding.evidence, "layers": summary}
    if layers.verdict is not Verdict.CAUSE:
        return replace(finding, evidence=evidence)
    return replace(
        finding,
        verdict=Verdict.CAUSE,
        title=layers.title,
        fix=layers.fix,
        cause=layers.cause,
        evidence=evidence,
        after=layers.after,
        strength=max(finding.strength, layers.strength),
    )


def _float_model(artifact: Path, reference_detector, weights, imgsz: int, folder: Path) -> Path | None:
    """The float graph the QDQ artifact was quantized from: the reference's artifact when it is one, else the
    re-export check's fp32 export of the reference's weights, else a new fp32 export of them at the artifact's size."""
    import onnx

    qdq = onnx.load(str(artifact))
    candidates = [Path(reference_detector.spec.artifact), *sorted(Path(folder).glob("re*.onnx"))]
    for path in candidates:
        if path.suffix == ".onnx" and path.is_file() and not is_qdq(path) and same_graph(qdq, onnx.load(str(path))):
            return path
    if weights is None or Path(weights).suffix != ".pt":
        return None
    from ...models.export import ExportConfig, ExportError, export_artifact

    try:
        out = export_artifact(Path(weights), ExportConfig(format="onnx", imgsz=imgsz), folder / f"float-{imgsz}.onnx")
    except ExportError:
        return None
    return out if same_graph(qdq, onnx.load(str(out))) else None
