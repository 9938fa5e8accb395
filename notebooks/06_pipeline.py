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
# # 06 · Pipelines: prune, train, quantize, in one recorded recipe
#
# **What a recipe is.** A list of steps with their options, written in Python or YAML. The steps compose what
# the earlier chapters did one at a time: each step takes the previous step's model, records its variant in the
# ledger with its lineage, and measures it before the next starts. Every step's options are checked before any
# long work begins, so a typo fails in a second, not after an hour of training; a step that fails later leaves
# the earlier variants intact and says which step it was.
#
# **When it helps.** The techniques stack: pruning makes the network narrower, training recovers accuracy,
# INT8 makes every remaining operation cheaper. Their effects multiply, so the best model is usually a pipeline.
# The workbench ships recipes: `demo-short` (what `workbench demo` runs), `demo-best` (the shipped student),
# `distill-vs-finetune`, `qat-vs-ptq`. From a terminal: `workbench optimize --recipe demo-short`.
#
# **How long:** about 30 s with the defaults below; with the values suggested in their comments about
# 3.5 minutes (measured on the 2-core development machine, the chapters run in order, 2026-12-01).

# %% tags=["parameters"]
WORKSPACE = None  # None: the shared workspace (`make lab` sets it; else ./workbench-runs)
VAL_IMAGES = 24  # 200 for accuracy you can compare
TRAIN_IMAGES = 16  # 800 for real training and 300 calibration images
RATIO = 0.3
EPOCHS = 1  # 5 shows the recovery starting; demo-best trains 120
IMGSZ = 320  # training, INT8, latency and accuracy size here; demo-best quantizes and times at 640
CALIBRATION_IMAGES = 8  # 300 with 800 train images

# %%
import pandas as pd

import workbench as wb
from workbench.widgets import Dashboard, PipelinePanel

session = wb.Session.open(WORKSPACE)
model_id = wb.open_model(session, wb.ModelChoice(shapes=wb.ShapesConfig(train=TRAIN_IMAGES, val=VAL_IMAGES)))

# %% [markdown]
# ## 1 · Build a recipe
#
# Start from a shipped recipe, add steps, edit the YAML; **Run recipe** checks every step first.

# %%
PipelinePanel(session)

# %% [markdown]
# The same as a Python object, small enough for a first run:

# %%
recipe = wb.Recipe.from_dict({
    "name": "notebook-pipeline",
    "steps": [
        {"prune": {"ratio": RATIO, "round_to": 16}},
        {"finetune": {"epochs": EPOCHS, "imgsz": IMGSZ, "batch": 8}},
        {"quantize": {"format": "openvino", "imgsz": IMGSZ, "calibration_images": CALIBRATION_IMAGES}},
    ],
    "measure": {"imgsz": [IMGSZ], "seconds": 1.0},  # a MeasurePlan: latency and mAP of every variant at IMGSZ
})
print(recipe.to_dict())

# %% [markdown]
# A recipe with a mistake fails before any work starts, naming the step and the fix:

# %%
try:
    wb.Recipe.from_dict({"steps": [{"prune": {"ratio": 1.5}}]})
except wb.ConfigError as exc:
    print(exc)

# %% [markdown]
# ## 2 · Run it

# %%
result = wb.run_recipe(session.workspace, recipe, model_id, session.data_yaml)
session.changed()
pd.DataFrame(wb.pipeline_table(session.workspace, result))

# %%
Dashboard(session)

# %% [markdown]
# ## What the measurement shows on this machine

# %%
rows = pd.DataFrame(wb.pipeline_table(session.workspace, result))
first, last = rows.iloc[0], rows.iloc[-1]
column = f"p50_ms_{IMGSZ}"
print(f"input: {first[column]:.2f} ms, mAP50-95 {first['map50_95']:.3f}; after {len(result.steps)} steps: "
      f"{last[column]:.2f} ms (input / output p50 = {first[column] / last[column]:.2f}), mAP50-95 "
      f"{last['map50_95']:.3f} after {EPOCHS} epoch(s) on {TRAIN_IMAGES} images"
      + (": a tiny run" if TRAIN_IMAGES < 200 or VAL_IMAGES < 100 else ""))

# %% [markdown]
# One epoch on a few images cannot recover the pruned model's accuracy; the latency gain is already real. The
# `demo-best` recipe fine-tunes the same pruned student for 120 epochs on 800 images; in the README's `make bench`
# run (a 2-core Intel Xeon with AMX, 2026-12-02) its INT8 ran at 0.67x the latency of Ultralytics' own INT8 export
# at 640 (the median of 10 alternating rounds, which keep a machine that changes speed from favouring either side;
# the two rows, timed one after the other, give 0.69), with mAP50-95 0.873 against the unpruned FP32 parent's
# 0.847.
