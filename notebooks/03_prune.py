# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · Prune: fewer channels, or more zeros
#
# **Structured pruning** removes whole channels (filters) from convolutions, together with everything that
# depends on them: the next layer's inputs, the BatchNorm, the branches joined by a concat. The network gets
# *narrower*: fewer multiply-adds in every runtime. The workbench uses Torch-Pruning's dependency graph; YOLO11's
# C3k2 / C2PSA blocks split a tensor in two, which the pruner cannot follow, so they are first replaced by
# equivalent split-free blocks (the same weights, output-identical). The Detect head's outputs are kept.
#
# **Unstructured pruning** (NNCF's magnitude pruning) sets the smallest weights to zero and keeps every shape.
# The file compresses better; a dense runtime still multiplies by the zeros, so it runs no faster. The notebook
# measures both, so you see it rather than take it on trust.
#
# **What it costs.** Accuracy drops at once (at 30% often to nothing) and has to be recovered by training:
# fine-tuning, or distillation from the unpruned model (chapter 05). **When it helps.** When the narrower widths
# suit the hardware: FLOPs fall with the ratio, latency does not always (channel counts that are multiples of
# 8 or 16 run better; measure, never trust FLOPs alone).
#
# **How long:** about 40 s with the defaults below, and about 7 s more for the side-by-side timing; with the values
# suggested in their comments about 4 minutes (measured on the 2-core development machine, the chapters run in
# order, 2026-12-01; the side-by-side timing on 2026-12-07).

# %% tags=["parameters"]
WORKSPACE = None  # None: the shared workspace (`make lab` sets it; else ./workbench-runs)
VAL_IMAGES = 24  # 200 for accuracy you can compare between variants
TRAIN_IMAGES = 16  # 800 for a real recovery
RATIO = 0.3  # share of channels removed from each prunable layer
ROUND_TO = 16  # channel counts rounded to a multiple of this
FINETUNE_EPOCHS = 1  # recovery training after pruning: 5 shows the trend (the shipped student took 120)
SPARSITY = 0.5  # unstructured: share of weights set to zero
LATENCY_IMGSZ = 320  # latency and accuracy size; the demo model was trained at 320
SECONDS = 1.0

# %%
import itertools

import cv2

import workbench as wb
from workbench.widgets import Dashboard, PrunePanel

session = wb.Session.open(WORKSPACE)
model_id = wb.open_model(session, wb.ModelChoice(shapes=wb.ShapesConfig(train=TRAIN_IMAGES, val=VAL_IMAGES)))

# %% [markdown]
# ## 1 · Structured pruning
#
# The panel runs the same step as the call below it, measures the result, and adds it to the ledger.

# %%
PrunePanel(session)

# %%
pruned_id = wb.prune(session.workspace, model_id, wb.PruneConfig(ratio=RATIO, round_to=ROUND_TO))
params = session.workspace.variant(pruned_id).params
before, after = params["before"], params["after"]
print(f"parameters {before['params']:,} -> {after['params']:,} ({1 - after['params'] / before['params']:.0%} fewer); "
      f"GFLOPs at 640 {before['gflops']} -> {after['gflops']}")

# %% [markdown]
# ## 2 · Recover by fine-tuning
#
# Straight after pruning the model has lost most of what it knew. Training on the labels brings it back; the
# shipped student, pruned the same way, was fine-tuned for 120 epochs (`wb.student_card()` holds its history).

# %%
tuned_id = wb.finetune(session.workspace, pruned_id, session.data_yaml, wb.DistillConfig(epochs=FINETUNE_EPOCHS, batch=8))

# %% [markdown]
# ## 3 · Unstructured pruning, for contrast

# %%
sparse_id = wb.sparsify(session.workspace, model_id, wb.SparsifyConfig(ratio=SPARSITY))
sparse = session.workspace.variant(sparse_id).params
gzip_mb = [sparse[k]["weights_fp16_gzip_bytes"] / 2**20 for k in ("before", "after")]
print(f"sparsity {sparse['after']['sparsity']:.0%}; compressed fp16 weights {gzip_mb[0]:.2f} -> {gzip_mb[1]:.2f} MB")
print(sparse["note"])

# %% [markdown]
# ## 4 · Measure all of them, in PyTorch and in OpenVINO

# %%
plan = wb.MeasurePlan(imgsz=(LATENCY_IMGSZ,), seconds=SECONDS)
variants = [model_id, pruned_id, tuned_id, sparse_id]
openvino = [wb.export(session.workspace, v, wb.ExportConfig(format="openvino", imgsz=LATENCY_IMGSZ)) for v in variants]
measured = wb.measure_variants(session, variants + openvino, plan)  # this chapter's measurement ids
Dashboard(session)

# %% [markdown]
# ## What the measurement shows on this machine

# %%
table = wb.comparison_table(session.workspace)
ok = table[(table["status"] == "ok") & table["measurement_id"].isin(measured)]
ok[["variant", "technique", "runtime", "precision", "gflops", "p50_ms", "stable", "map50_95", "speedup"]]

# %%
def p50(variant_id, runtime):
    rows = ok[(ok["variant_id"] == variant_id) & (ok["runtime"] == runtime)]
    return float(rows["p50_ms"].iloc[-1])


for runtime, ids in (("pytorch", variants), ("openvino", openvino)):
    base, pruned, sparse = p50(ids[0], runtime), p50(ids[2], runtime), p50(ids[3], runtime)
    print(f"{runtime}, rows timed apart: pruned {base / pruned:.2f}x and {SPARSITY:.0%}-sparse {base / sparse:.2f}x "
          f"as fast as the unpruned model ({base:.2f} ms p50 at {LATENCY_IMGSZ} px)")
accuracy = ok.set_index("variant_id")["map50_95"]
size = "a tiny run: read the gap, not the value" if TRAIN_IMAGES < 200 or VAL_IMAGES < 100 else "a short recovery"
print(f"mAP50-95 after {FINETUNE_EPOCHS} fine-tune epoch(s) on {TRAIN_IMAGES} images: {accuracy[tuned_id]:.3f} "
      f"(unpruned {accuracy[model_id]:.3f}, {VAL_IMAGES} val images): {size}")

# %% [markdown]
# Those ratios come from rows timed one after the other, with other measurements between them: a shared
# machine's speed moves in that time, so they are a first look, not a verdict. The cell below opens the unpruned
# (dense), the fine-tuned pruned and the sparse model as deployments in each runtime (the same size, threads and
# OpenVINO precision as the rows; the whole call: resize, model, NMS) and times the three side by side in
# alternating rounds on the validation images, as chapter 08's doctor does. For each it prints dense / variant
# with its lower bound and whether "faster by at least 1.1x" holds on this machine.

# %%
val = [cv2.imread(str(path)) for path in sorted((session.data_yaml.parent / "images" / "val").glob("*.jpg"))]
FASTER = 1.1  # "faster": dense / variant at least this, at the 95% lower bound
SAYS = {"holds": "holds: the {} model is faster here", "does not hold": "does not hold: the {} model is no faster here",
        "inconclusive": "inconclusive: the machine was busy, run this cell again"}

for runtime, ids in (("pytorch", variants), ("openvino", openvino)):
    precision = "f32" if runtime == "openvino" else None  # the rows' precision (the plan's default)
    trio = {name: wb.open_detector(wb.DeploymentSpec(session.workspace.artifact_path(ids[i]), imgsz=LATENCY_IMGSZ,
                                                     threads=wb.usable_cores(), precision=precision))
            for name, i in (("dense", 0), ("pruned", 2), ("sparse", 3))}
    paired = wb.compare_calls({name: lambda d=d, c=itertools.cycle(val): d(next(c)) for name, d in trio.items()})
    for name in ("pruned", "sparse"):
        bound = paired.bound("dense", name)
        print(f"{runtime}, side by side: dense / {name} {bound.words()}; {name} faster by {FASTER}x or more? "
              + SAYS[bound.verdict(FASTER)].format(name))

# %% [markdown]
# Expect the sparse model's verdict printed above to be "does not hold": zeros cost as much as any other weight
# on a dense runtime. The pruned model's verdict is what structured pruning buys at this size on this CPU, and it
# is this machine's answer only: another CPU, core count or size can give another. Its accuracy after one short
# fine-tune on a few images is far below the parent's; chapter 05 compares two ways of training it back, and the
# shipped student shows what a full recovery reaches.
