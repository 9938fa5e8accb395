# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 00 · Quickstart: a detector, a dataset, a first comparison
#
# This notebook runs entirely on your machine, with no network. It walks through the ground every later chapter
# stands on:
#
# 1. **Where am I?** The environment fingerprint: CPU, instruction sets, cores, library versions. Every number
#    the workbench records carries it, because a latency measured on one machine says little about another.
# 2. **A dataset and a model.** Coloured shapes (circles, triangles, squares, stars) on crops of real
#    photographs, generated from a seed, so everyone in a class gets exactly the same images; and a YOLO11n
#    trained on them that ships with the workbench.
# 3. **A measurement.** Accuracy through Ultralytics' own validator, recorded in the workspace's ledger.
# 4. **A first comparison.** The model exported to ONNX and OpenVINO, each timed and checked, on one chart.
#
# **How long:** about 20 s with the defaults below, about 40 s with the values suggested in
# their comments (measured on the 2-core development machine, the chapters run in order, 2026-12-01; yours will
# differ).

# %% tags=["parameters"]
WORKSPACE = None  # None: the shared workspace (`make lab` sets it; else ./workbench-runs), or a folder of your own
VAL_IMAGES = 40  # generated validation images; 200 reproduces the demo model's card
TRAIN_IMAGES = 8  # not used for training here, only generated alongside
IMGSZ = 320  # the demo model's training size; try 640 to see how latency grows
SECONDS = 1.0  # timed seconds per latency measurement (after warm-up); 3.0 gives steadier figures
SEED = 0

# %% [markdown]
# ## 1 · Where am I?

# %%
import workbench as wb

print(wb.describe_environment())

# %% [markdown]
# The `ISA` line matters later: `avx512_vnni` or `amx_int8` make INT8 inference fast, `avx512_bf16` or
# `amx_bf16` let OpenVINO run in bfloat16 by default, which changes accuracy slightly and speed a lot.
#
# ## 2 · A dataset and the demo model
#
# A *session* holds the workspace (a folder with the ledger and every artifact), the model being worked on and
# its dataset. `open_model` generates the dataset (image *k* depends only on the seed and *k*, so a small set is
# the beginning of the large one), checks that model and dataset share their classes, and records the model.

# %%
session = wb.Session.open(WORKSPACE)
shapes = wb.ShapesConfig(seed=SEED, train=TRAIN_IMAGES, val=VAL_IMAGES, imgsz=320)
model_id = wb.open_model(session, wb.ModelChoice(model="demo", shapes=shapes))
summary = wb.check_dataset(session.data_yaml)
print(session.data_yaml)
print(summary.images, summary.instances, summary.names)

# %%
model = wb.load_model("demo")
card = wb.demo_card()
info = wb.model_info(model, imgsz=card["imgsz"])
print(f"{card['architecture']} trained {card['epochs']} epochs at imgsz {card['imgsz']}: "
      f"mAP50-95 {card['metrics']['map50_95']} on {card['dataset']['val']} val images")
print(f"{info['params']:,} parameters, {info['gflops']} GFLOPs per image at {info['imgsz']} px")

# %% [markdown]
# ## 3 · Measure accuracy, record it
#
# mAP50 counts a detection as right when its box overlaps the label by half; mAP50-95 averages over stricter
# overlaps up to 95%, so it rewards tight boxes. Both are measured at the model's training image size, here by
# Ultralytics' own validator (the measurements below score each runtime the same way, through the workbench).

# %%
from IPython.display import HTML

accuracy = wb.evaluate(model, session.data_yaml, wb.AccuracyConfig(imgsz=card["imgsz"]))
wb.per_class_figure(accuracy.per_class, title=f"mAP per class on {accuracy.images} images").show()

# %%
val_images = sorted((session.data_yaml.parent / "images" / "val").glob("*.jpg"))[:4]
HTML(wb.prediction_grid_html(model, val_images, imgsz=card["imgsz"]))

# %% [markdown]
# ## 4 · A first comparison
#
# Export the model to ONNX and OpenVINO, then time each runtime (batch 1, after warm-up) and measure its mAP at
# the same image size, in the same runtime. OpenVINO is asked for f32 here: on a CPU with native bfloat16 its
# default would silently compute in bf16. A *plan* says what to measure; every panel, recipe and command uses one.

# %%
onnx_id = wb.export(session.workspace, model_id, wb.ExportConfig(format="onnx", imgsz=IMGSZ))
openvino_id = wb.export(session.workspace, model_id, wb.ExportConfig(format="openvino", imgsz=IMGSZ))
plan = wb.MeasurePlan(imgsz=(IMGSZ,), seconds=SECONDS)
measured = wb.measure_variants(session, [model_id, onnx_id, openvino_id], plan)  # measurement ids

# %% [markdown]
# The chart below reads the ledger: every point is one variant in one runtime; lower latency is to the left,
# higher accuracy is up, and the dotted line joins the points no other point beats on both. Click a point for its
# lineage and measurements; filter by runtime, precision or image size above it.

# %%
from workbench.widgets import Dashboard

dashboard = Dashboard(session)
dashboard

# %%
table = wb.comparison_table(session.workspace)
mine = table[(table["status"] == "ok") & table["measurement_id"].isin(measured)]  # this notebook's rows
mine[["variant", "runtime", "precision", "imgsz", "p50_ms", "stable", "map50_95", "map_imgsz", "speedup"]]

# %% [markdown]
# **What you saw.** On a small validation set (the default 40 images) the mAP wobbles by a few points around the
# card's value; with `VAL_IMAGES = 200` it matches the card. The exports keep the accuracy and change the speed:
# the table's `speedup` is against PyTorch on this machine, at the same image size, and `stable` says whether the
# timing windows agreed within 10%. From the command line, `workbench demo` does all of this (plus the shipped
# pruned student and a short optimization recipe) and writes an HTML report; chapter 02 goes through export and
# measurement in detail.
