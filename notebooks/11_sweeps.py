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
# # 11 · Sweeps: search the options, on more than one machine, and read the front
#
# Chapters 03 to 06 ran one recipe at a time, with options picked by hand. A researcher wants to know how the
# options trade off: how much pruning, how much training, which precision, at which size. This chapter runs a
# small **sweep**: a search space over recipe options, each point (a *trial*) a recipe run and measured, on a
# **Dask** cluster. The answer is the **Pareto front**: the trials no other trial beats on both accuracy and
# latency, each one a variant in the ledger with its lineage.
#
# 1. **Write the space**: the recipe every trial runs, the options that vary, the objective and the constraints.
# 2. **Start a cluster**: a `LocalCluster` of two worker processes on this machine (nothing to set up).
# 3. **Run the sweep** and watch the trials come back; each latency measurement is made by one worker at a time
#    on a machine, so two never share the cores.
# 4. **Read the front**, and the constrained answer: the best trial that meets the latency and size budgets.
# 5. **Past one machine**: the same sweep against a scheduler's address, with a target device as a worker.
# 6. **Share it**: every variant as an MLflow run, to browse with `mlflow ui`.
#
# **What this is not.** Small trials (8 validation images, no training) make a sweep that finishes in a minute or
# two; their accuracies are rough. The method is the same at full size; the minutes are
# not. Two workers on a 2-core machine run training tasks side by side, so each trial runs slower than alone.
#
# **How long:** about 95 s with the defaults below, alone on an empty workspace (93 to 97 s, measured on the
# 2-core development machine, 2026-12-03; yours will differ); the last cell prints this run's time. Most of it
# is the trials.

# %% tags=["parameters"]
WORKSPACE = None  # None: the shared workspace (`make lab` sets it; else ./workbench-runs)
TRAIN_IMAGES = 8
VAL_IMAGES = 8
WORKERS = 2  # Dask worker processes on this machine
SIZES = [160, 320]  # input sizes to try (the demo model was trained at 320)
THREADS = [1, 2]  # inference threads of the latency measurement
P99_BUDGET_MS = 50.0  # the constraint: p99 latency on this machine
SECONDS = 0.5  # timed seconds per latency measurement

# %%
import time

import pandas as pd
import plotly.io as pio

import workbench as wb

started = time.perf_counter()
session = wb.Session.open(WORKSPACE)
model_id = wb.open_model(session, wb.ModelChoice(shapes=wb.ShapesConfig(train=TRAIN_IMAGES, val=VAL_IMAGES)))
workspace, data_yaml = session.workspace, session.data_yaml
print(f"sweeping variant {model_id} on {data_yaml}")

# %% [markdown]
# ## 1 · The space
#
# The recipe below quantizes the model to INT8 for OpenVINO; the sweep varies the input size it is exported and
# measured at, and the threads its latency is measured with (how many cores a deployment gives the model). A
# prune ratio is a dimension like any other (`prune.ratio: [0.2, 0.4]` with a `prune` step), but a pruned model
# needs recovery training (chapter 05) before its accuracy means anything, and that takes minutes per trial. `objective` says what "best" means; `constraints` what a trial must meet to count at all.
# The space is checked before anything runs: an option that the step does not have, or a value it refuses,
# is named with its fix.

# %%
space = wb.SearchSpace.from_dict({
    "name": "chapter-11",
    "steps": [
        {"quantize": {"format": "openvino", "calibration_images": 8}},
    ],
    "search": {"measure.imgsz": SIZES, "measure.threads": THREADS},
    "objective": {"maximize": "map50_95"},
    "constraints": {"p99_ms": {"max": P99_BUDGET_MS}, "size_mb": {"max": 10}},
    "method": "grid",
    "trials": len(SIZES) * len(THREADS),
    "measure": {"seconds": SECONDS},
})
print(f"{space.grid_size} grid points; objective {space.direction} {space.metric}")
try:
    wb.SearchSpace.from_dict({"steps": [{"prune": {}}], "search": {"prune.ratios": [0.2]}})
except wb.ConfigError as exc:
    print(exc)

# %% [markdown]
# ## 2 · A cluster on this machine
#
# `wb.DaskEngine()` starts a `LocalCluster` of `WORKERS` processes on 127.0.0.1. The client (this notebook)
# sends each worker the model and the dataset once, the workers run the trials in their own scratch folders and
# send back the variants they made; **only the client writes the ledger**, so a worker that dies loses its task
# (Dask runs it again elsewhere) and never half a trial. The dashboard link shows the tasks as they run.

# %%
engine = wb.DaskEngine(workers=WORKERS)
print("Dask dashboard:", engine.dashboard_link)

# %% [markdown]
# ## 3 · Run the sweep
#
# **Predict** before running: how much accuracy does 160 px lose against 320, how much latency does it save, and
# what do two threads buy over one?

# %%
result = wb.run_sweep(workspace, model_id, data_yaml, space, engine=engine,
                      on_result=lambda spec, r: print(f"trial {spec.number} {spec.params}: {r.values or r.error}"))
session.changed()
rows = pd.DataFrame(result.rows)
rows

# %% [markdown]
# ## 4 · The front and the constrained answer
#
# A trial is on the front when no other trial is at least as good on both accuracy and latency and better on
# one. The constrained answer is the best trial by the objective among those that meet every constraint.

# %%
figure = wb.sweep_figure(result.rows, objective=space.metric)
pio.show(figure)
print(f"{len(result.pareto)} of {len(result.rows)} trials on the front")
if result.best:
    print(f"best under the constraints: variant {result.best['variant_id']} {result.best['params']}")
else:
    print(f"no trial meets the constraints: {result.why_no_best}")

# %% [markdown]
# Read the latency column with the cluster in mind: the two workers share this machine's two cores, so while one
# worker times a trial (one timing per machine at a time) the other may be quantizing the next trial on the same
# cores. A trial timed with two threads then often runs slower than with one, which says more about the
# neighbour than about the threads. On a cluster, give timing its own machines (section 5), or time the front's
# variants again alone (`wb.measure`) before deciding.
#
# ## 5 · Past one machine
#
# The same sweep runs on any Dask cluster: start a scheduler on one machine (`dask scheduler`), and a worker on each
# machine that should run trials (`workbench worker --scheduler tcp://HOST:8786`). A worker on a target device names
# its catalog target (`workbench worker --target jetson-orin-nano-super-8gb --scheduler ...`): a space whose latency
# constraint names that target (`p99_ms: {max: 20, target: jetson-orin-nano-super-8gb}`) sends its latency tasks to
# that worker only, and the measurements it records are what the advisor of chapter 01 compares its estimate for
# that target with. Then `wb.DaskEngine("tcp://HOST:8786")` here. Workers need the workbench installed, and reach
# the scheduler over the network: put the cluster on a private network or behind TLS (Dask's `distributed.comm.tls`
# settings); the scheduler runs whatever the client sends it.

# %%
engine.close()

# %% [markdown]
# ## 6 · Share it: MLflow
#
# `wb.export_to_mlflow` writes every variant of the workspace as an MLflow run (parameters, metrics, the lineage
# as tags and as nested runs, the model and its card as artifacts) into a local SQLite store; `mlflow ui` with
# the printed store browses them.

# %%
exported = wb.export_to_mlflow(workspace, variant_ids=[r["variant_id"] for r in result.rows if r.get("variant_id")],
                               artifacts=False)
print(f"{len(exported.runs)} runs in {exported.tracking_uri}; browse with: {exported.browse}")

# %% [markdown]
# ## 7 · The search at full size: the shipped searched variant
#
# The same machinery, run once offline at full size: `workbench/recipes/sweeps/search-student.yaml` prunes the
# shipped student again at each ratio its space lists, fine-tunes each trial for the epochs its `finetune` step
# names, quantizes it to INT8 for OpenVINO, and keeps the fastest trial whose mAP50-95 stays within 0.01 of the
# FP32 parent. Its best trial ships with the package, with a card that holds the space, every trial and the time
# spent (`workbench demo-model --searched` shows it, `--train` runs the search again); the cell below prints the
# trials and the time from that card. `make bench` times it at 640 beside Ultralytics' own INT8 export of the
# parent, in the same run. In the app, the **Sweep** tab runs any shipped or own spec, and the Compare tab
# draws every sweep in the ledger with its front.

# %%
if wb.searched_weights().is_file():
    card = wb.searched_card()
    trials = pd.DataFrame(card["search"]["trials"])
    print(f"search {card['search']['name']}: trial {card['search']['chosen_trial']} chosen, "
          f"{card['search']['seconds_total'] / 60:.0f} min of trials on {card['trained_on']['cpu']}")
    print(trials[["number", "params", "map50_95", "p50_ms", "p99_ms", "size_mb", "feasible"]].to_string(index=False))
else:
    print("the searched variant is not in this install")
print(f"chapter 11 ran in {time.perf_counter() - started:.0f} s")

# %% [markdown]
# ## Exercises
#
# 1. Add a `prune` step and a `finetune` step before `quantize`, `"prune.ratio": {"low": 0.1, "high": 0.5}` and
#    `"finetune.epochs": [5, 20]`, with `"method": "optuna"` and `"trials": 8`: where does the constrained search
#    put its trials, and does the front move?
# 2. Add `"early_stop": {"epochs": 1, "keep": 0.5}` to that: how much time does it save, and does it drop a
#    trial that would have been best?
# 3. Start a second worker from a terminal with `workbench worker --scheduler ...` and watch the dashboard.
