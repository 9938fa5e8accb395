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
# # 01 · Where to deploy: cloud, edge or on-premises, and on which hardware
#
# Before exporting or optimizing anything, decide where the model will run. The deployment guide names three
# places, each with its own trade-offs:
#
# - **Cloud** (a virtual machine or a managed endpoint): scales with demand and is paid per hour of use, with
#   nothing to buy. But every image crosses the network, so the round trip and the upload add to the latency,
#   the images leave the site (a privacy or contract question) and nothing works while the connection is down.
# - **Edge** (a device at the camera: a Jetson, a Raspberry Pi, a Coral stick, a phone, running TFLite/LiteRT,
#   TensorRT or OpenVINO): the lowest latency, images never leave the device and it works offline. But there is
#   little compute, memory and power per device, so the model must be small (this is where chapters 03-05 pay),
#   and a fleet of devices has to be updated and watched.
# - **On-premises** (your own servers, often in Docker or Kubernetes): full control, the images stay on the
#   site's network and it works without the internet. But buying, powering, securing and updating the machines
#   is your job.
#
# The workbench's **advisor** turns this into numbers: for a set of requirements (latency budget, images per
# second, connectivity, privacy, fleet size, budget, power) it estimates for every target of its catalog the
# latency, memory, devices needed and cost per month, says which requirement each target misses, and ranks them.
# The latency estimates come from the model's GFLOPs, the target's vendor peak and an *efficiency* learned from
# the measurements on **your** machine; the last section checks how far to trust them.
#
# **How long:** about 10 s with the defaults below, including an ONNX export of the demo model timed at two
# sizes, about 15 s with the values suggested in their comments (measured on the 2-core development machine, the
# chapters run in order, 2026-12-02; yours will differ).

# %% tags=["parameters"]
import workbench as wb

WORKSPACE = None  # None: the shared workspace (`make lab` sets it; else ./workbench-runs), or a folder of your own
# A chain of 100 shops, one shelf camera each: an image every 2 s on average, up to 2 a second when busy, an
# answer within 200 ms. 320 px is the demo model's own size; try 640, or any field of wb.Requirements.
REQUIREMENTS = wb.Requirements(
    latency_p99_ms=200.0,  # end-to-end budget per image at the 99th percentile, network included
    mean_images_per_s=0.5,  # per site, averaged over the day
    peak_images_per_s=2.0,  # per site, the busiest minute: capacity is sized for it
    imgsz=320,  # the input size the model will run at
    connectivity="online",  # online | intermittent | offline
    images_may_leave_site=True,  # False: privacy or a contract keeps images on the site
    fleet_size=100,  # sites (cameras, shops, lines)
    monthly_budget_usd=1500.0,  # the whole fleet: hardware paid off over amortize_months, power, cloud hours
    power_envelope_w=None,  # per device on a site, e.g. 10; None: no limit
    rank_by="cost",  # cost: the cheapest that meets the requirements first; latency: the fastest
)
INCLUDE_THIS_MACHINE = False  # True ranks this machine too (already paid for: it wins on cost when fast enough)
MEASURE_SIZES = (256, 416)  # on an empty workspace: the demo model's ONNX export is timed at these sizes
MEASURE_SECONDS = 0.5  # timed seconds per size; 2.0 gives steadier figures
VAL_IMAGES = 16  # on an empty workspace: the generated validation images (200 reproduces the demo model's card)

# %% [markdown]
# ## 1 · The target catalog
#
# The catalog lists cloud instances, edge devices and on-premises machines with what the advisor needs to know of
# each: the device that runs the model, its **peak** compute at each precision, its memory and power, its price
# (per hour in the cloud, per unit otherwise) with the date it was read, and the runtimes it runs. This machine
# is in it too, its peaks derived from its own clock, cores and instruction set.

# %%
targets = wb.load_catalog()
catalog = wb.catalog_table(targets)
counts = catalog["environment"].value_counts()
print(f"{len(targets)} targets: " + ", ".join(f"{n} {environment}" for environment, n in counts.items()))
print(f"prices read between {catalog['price_date'].min()} and {catalog['price_date'].max()}")
catalog

# %% [markdown]
# The peaks are **vendor peaks**: the dense arithmetic rate the hardware can reach (a sparse figure is halved,
# a CPU's is derived from cores x clock x vector lanes), not what a small detector gets from it. Every figure
# carries its source in `workbench/core/advise/targets.yaml`; here is one:

# %%
example = next(t for t in targets if t.environment == "edge")
for precision, figure in example.peak.items():
    print(f"{example.id} {precision}: {figure.value:g} {figure.unit}\n    source: {figure.source}")
print(f"price: {example.price.value:g} {example.price.unit} ({example.price_date})\n    source: {example.price.source}")

# %% [markdown]
# Prices change and your own hardware is not in the list: put targets of your own (the same fields, a source for
# every figure) in a YAML file and load them with `wb.load_catalog(extra=["my-targets.yaml"])`, or point
# `WORKBENCH_TARGETS` at it; an entry with an existing `id` replaces that one.
#
# ## 2 · The model and this machine's measurements
#
# The advisor ranks the workspace's models (each PyTorch variant, with the mAP50-95 measured for it). Its
# efficiencies are learned from the latency rows measured on this machine, best from one runtime at two sizes
# or more (that separates the per-call overhead from the compute). If the workspace has none yet, the cell below
# exports the demo model to ONNX with a dynamic input size and times it at `MEASURE_SIZES`.

# %%
session = wb.Session.open(WORKSPACE)
if session.model_id is None or session.data_yaml is None:
    wb.open_model(session, wb.ModelChoice(model="demo", shapes=wb.ShapesConfig(train=8, val=VAL_IMAGES)))
sizes_measured = {}
for check in wb.estimate_checks(session.workspace):
    sizes_measured.setdefault(check["runtime"], set()).add(check["imgsz"])
if not any(len(sizes) >= 2 for sizes in sizes_measured.values()):
    onnx_id = wb.export(session.workspace, session.model_id, wb.ExportConfig(format="onnx", dynamic=True))
    plan = wb.MeasurePlan(imgsz=MEASURE_SIZES, seconds=MEASURE_SECONDS, accuracy=False, warmup_s=0.3)
    wb.measure_variants(session, [onnx_id], plan)
    print(f"timed the ONNX export at {MEASURE_SIZES}")
checks = wb.estimate_checks(session.workspace)
print(f"{len(checks)} latency rows measured on this machine: " + ", ".join(sorted({c["runtime"] for c in checks})))

# %% [markdown]
# ## 3 · Rank the targets
#
# For every target the advisor picks the runtime and precision it estimates fastest, sizes the fleet for the peak
# rate (devices at every site on the edge, a shared pool in the cloud and on premises), adds the network to the
# cloud's latency, and checks the requirements in the guide's order: images leaving the site, connectivity,
# memory, latency, power, budget. Targets that meet them all come first, the cheapest first (or the fastest,
# with `rank_by="latency"`); the `reasons` column says what every other one misses. This machine is left out
# (`INCLUDE_THIS_MACHINE`): it is already paid for, so it would win on cost whenever it is fast enough.

# %%
candidates = [t for t in targets if INCLUDE_THIS_MACHINE or not t.probed]  # leave out what costs nothing here
advice = wb.advise_workspace(session.workspace, REQUIREMENTS, targets=candidates)
columns = ["name", "environment", "model", "format", "precision", "p99_ms", "network_ms", "devices", "monthly_usd",
           "per_million_usd", "feasible", "reasons"]  # fmt: skip
wb.advice_table(advice, ["rank", *columns]).round(2)

# %%
print(advice.summary())

# %% [markdown]
# **How to read the chart.** Each marker is one target with the model the advisor picked for it: cost per month
# for the whole fleet to the right, estimated p99 latency up. Filled markers meet every requirement, hollow ones
# miss at least one (hover for the reasons); the red line is the latency budget, the purple one the monthly
# budget, so the targets that qualify sit in the lower left corner, and the star marks the recommendation.

# %%
wb.advice_figure(advice).show()

# %% [markdown]
# ## 4 · How far to trust the estimates: a check on your own machine
#
# The advisor cannot time a Jetson or a cloud instance from here, but it can show how well its estimator does
# where the truth is known: every latency row measured on this machine is estimated again **without** that row
# (without its variant at its size) and set beside its measurement. Points on the dotted line are exact; the
# further off, the wider the margin to keep on targets the workbench has never measured. Every latency row
# recorded from now on also keeps what the estimator said before it was measured.

# %%
print(wb.estimate_check_text(checks))
wb.estimate_check_figure(checks).show()

# %% [markdown]
# Row by row: an estimate whose basis is `prior` had no other row of its runtime and precision to learn from
# (the priors are assumed shares of peak, not measured), so expect those to be the furthest off; the rows
# `learned from` others show what the fitted efficiency does. Chapter 02 times every runtime, which gives the
# estimator more to learn from.

# %%
import pandas as pd

pd.DataFrame(checks, columns=["variant_id", "runtime", "precision", "imgsz", "measured_p50_ms", "estimated_p50_ms",
                              "error_pct", "basis"]).round(2)  # fmt: skip

# %% [markdown]
# ## 5 · Exercise: change one requirement
#
# The cell below keeps every requirement but one: the images **may not leave the site** (a privacy rule, or a
# customer's contract). Before you run it, predict: which targets drop out, which move up, and what is the new
# recommendation? Then run it: it prints every target whose rank or verdict changed, and why.
#
# Try the others too: `connectivity="offline"` (a site with no internet), `power_envelope_w=10` (a device on a
# battery or on PoE), `fleet_size=10`, or `latency_p99_ms=20` (too little for a round trip to the cloud).

# %%
import dataclasses

CHANGED = dataclasses.replace(REQUIREMENTS, images_may_leave_site=False)

# %%
after = wb.advise_workspace(session.workspace, CHANGED, targets=candidates)
print(wb.describe_changes(wb.ranking_changes(advice, after)))
print()
print(after.summary())

# %% [markdown]
# ## 6 · The same in a panel
#
# The **Where to deploy** tab of the app (`make app`) holds this form; ranked there, its latency budget is drawn
# on the Compare tab's chart, with the variants that meet it ringed and the most accurate of them named. The panel
# ranks the whole catalog, this machine included.

# %%
from workbench.widgets import AdvisorPanel

AdvisorPanel(session, requirements=REQUIREMENTS)

# %% [markdown]
# **What you saw.** A requirement rules targets in or out before cost or speed count: privacy and connectivity
# take the cloud away, a power envelope takes the power-hungry devices and servers away, a tight latency budget
# leaves no room for the network round trip (and so for the cloud). Among what is left, the fleet size decides
# between a pool of shared machines and a device at every site. The estimates are only as good as the check in section 4 says; chapter 02
# measures the runtimes this chapter's ranking relies on, and chapters 03-05 make the model small enough for the
# targets it did not fit.
