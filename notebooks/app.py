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
# # Deploy Workbench
#
# Every step in one app, in twelve tabs: **Model & data** (choose a model and dataset), **Where to deploy**,
# **Export**, **Measure**, **Prune**, **Quantize**, **Distill**, **Pipeline** (run a recipe), **Sweep** (search the
# options), **Compare** (every variant on one chart), **Troubleshoot** (the accuracy and speed doctors) and
# **Monitor** (a running server). Served by `make app` (Voila) or run here in JupyterLab. Everything
# lands in the workspace's ledger, shared with the guided notebooks and the `workbench` command.

# %% tags=["parameters"]
WORKSPACE = None  # None: the shared workspace (`make app` sets it; else ./workbench-runs)
OPEN_DEMO = True  # on an empty workspace, open the shipped demo model and generate its dataset
TRAIN_IMAGES = 160  # a quick start; the demo model's card used 800 / 200 (reopen in "Model & data")
VAL_IMAGES = 80

# %%
import workbench as wb
from workbench.widgets import Workbench

session = wb.Session.open(WORKSPACE)
if OPEN_DEMO and session.model_id is None:
    wb.open_model(session, wb.ModelChoice(shapes=wb.ShapesConfig(train=TRAIN_IMAGES, val=VAL_IMAGES)))
Workbench(session=session)
