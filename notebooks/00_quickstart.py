# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 00 · Quickstart: a detector, a dataset, a first measurement
#
# This notebook runs entirely on your machine, with no network. It walks through the ground every later chapter
# stands on:
#
# 1. **Where am I?** The environment fingerprint: CPU, instruction sets, cores, library versions. Every number
#    the workbench records carries it, because a latency measured on one machine says little about another.
# 2. **A dataset.** Coloured shapes (circles, triangles, squares, stars) on crops of real photographs, generated
#    from a seed, so everyone in a class gets exactly the same images.
# 3. **A model.** A YOLO11n trained on that dataset ships with the workbench; its card says how it was made.
# 4. **A measurement.** Accuracy through Ultralytics' own validator, recorded in the workspace's ledger with its
#    context, so later chapters can compare every optimized variant against it.

# %% tags=["parameters"]
WORKSPACE = "workbench-runs"  # everything this notebook writes lands here
VAL_IMAGES = 40  # generated validation images; the demo model's card uses 200
TRAIN_IMAGES = 8  # not used for training here, only generated alongside
SEED = 0

# %% [markdown]
# ## 1 · Where am I?

# %%
import workbench as wb
from workbench.core.environment import describe

print(describe())

# %% [markdown]
# The `ISA` line matters later: `avx512_vnni` or `amx_int8` make INT8 inference fast, `avx512_bf16` or
# `amx_bf16` let OpenVINO run in bfloat16 by default, which changes accuracy slightly and speed a lot.
#
# ## 2 · A dataset
#
# `generate_shapes` writes a YOLO dataset (images, one label file per image, a data YAML). Image *k* depends
# only on the seed and *k*, so a small set is the beginning of the large one.

# %%
workspace = wb.Workspace(WORKSPACE)
dataset = wb.generate_shapes(workspace.datasets,
                             wb.ShapesConfig(seed=SEED, train=TRAIN_IMAGES, val=VAL_IMAGES, imgsz=320))
summary = wb.check_dataset(dataset.data_yaml)
print(dataset.data_yaml)
print(summary.images, summary.instances, summary.names)

# %% [markdown]
# ## 3 · The demo model and its card

# %%
model = wb.load_model("demo")
card = wb.demo_card()
info = wb.model_info(model, imgsz=card["imgsz"])
print(f"{card['architecture']} trained {card['epochs']} epochs at imgsz {card['imgsz']}: "
      f"mAP50-95 {card['metrics']['map50_95']} on {card['dataset']['val']} val images")
print(f"{info['params']:,} parameters, {info['gflops']} GFLOPs per image at {info['imgsz']} px")

# %% [markdown]
# ## 4 · Measure accuracy, record it
#
# mAP50 counts a detection as right when its box overlaps the label by half; mAP50-95 averages over stricter
# overlaps up to 95%, so it rewards tight boxes. Both are measured at the model's training image size.

# %%
from IPython.display import HTML

from workbench.core.report import per_class_figure, prediction_grid_html

accuracy = wb.evaluate(model, dataset.data_yaml, wb.AccuracyConfig(imgsz=card["imgsz"]))
variant = workspace.add_artifact(wb.demo_weights(), "yolo11n-shapes.pt", step="source",
                                 params={"source": "demo"}, format="pt")
workspace.ledger.add_measurement(variant, "accuracy", accuracy.metrics(),
                                 {"runtime": "pytorch", "precision": "fp32", "imgsz": card["imgsz"],
                                  "dataset": dataset.config.name})
per_class_figure(accuracy.per_class, title=f"mAP per class on {accuracy.images} images").show()

# %%
val_images = sorted((dataset.root / "images" / "val").glob("*.jpg"))[:4]
HTML(prediction_grid_html(model, val_images, imgsz=card["imgsz"]))

# %% [markdown]
# ## What the ledger holds now
#
# Every variant (here: the demo model) and every measurement, with the environment fingerprint. Later chapters
# add exported, pruned, quantized and distilled variants to the same table.

# %%
workspace.measurements("accuracy")[["variant", "map50", "map50_95", "ctx_imgsz", "ctx_dataset", "created_at"]]

# %% [markdown]
# **What you saw.** On a small validation set the mAP wobbles by a few points around the card's value; with
# `VAL_IMAGES = 200` it matches the card. From the command line, `workbench demo` does all of this and writes
# an HTML report.
