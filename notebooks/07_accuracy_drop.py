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
# # 07 · Why accuracy dropped: the accuracy doctor
#
# The model scored well in validation; deployed, it finds other boxes. The deployment guide's troubleshooting
# section lists where to look, in order, and the workbench's **accuracy doctor** (`wb.diagnose_accuracy`) runs one
# check for each item, side by side with a correct **reference** deployment of the same model:
#
# - **data**: do the production images look like the training images (brightness, contrast, blur, size)?
#   A model cannot be fixed by code for images it never saw; drift is a data problem.
# - **preprocessing** (and postprocessing): is the image turned into the input tensor as in training (channel
#   order, the x / 255 scale, mean/std, letterbox or stretch, pad grey, layout)? Are the thresholds the same?
#   The doctor compares the two tensors and fits what turns one into the other.
# - **environment**: library versions, the runtime, the precision actually executed.
# - **stage-by-stage logging**: decode, preprocessing, inference, postprocessing compared one by one; the first
#   stage that differs is where to look.
# - **re-export**: the model exported again with other settings, with parity: an export or quantization fault
#   told apart from a pipeline fault.
# - **controlled test**: mAP per class on a labelled control set (where there are no labels, agreement with the
#   reference's detections).
#
# Each check gives a `Finding`: a verdict (ok, suspect, cause), the evidence as numbers, the fix and, where the
# fix can be applied here, the metric measured after it. The `Diagnosis` ranks them and says the most likely cause
# in one sentence. This chapter uses the **accuracy lab**: the demo model exported to ONNX at 320, a few
# generated images made non-square (480 x 288, so that letterbox, stretch and box mapping matter), and a
# deployment with one mistake planted.
#
# **How long:** about 10 s with the defaults below: 8 s after chapters 00-06, 11 s alone on an empty workspace,
# where it builds the lab first (measured on the 2-core development machine, run headless with nbclient,
# 2026-12-02; yours will differ).

# %% tags=["parameters"]
WORKSPACE = None  # None: the shared workspace (`make lab` sets it; else ./workbench-runs)
LAB_IMAGES = 8  # generated images per split: production, training and the labelled control set (16 at most are used)
# The exercise's fault: stretch_not_letterbox, wrong_pad_value, imagenet_normalization, no_scaling, conf_far_too_high
EXERCISE = "stretch_not_letterbox"

# %%
from dataclasses import replace

import cv2
import pandas as pd
from IPython.display import Image, display

import workbench as wb

session = wb.Session.open(WORKSPACE)
lab = wb.build_accuracy_lab(session.workspace.root / "doctor" / "accuracy-lab", images=LAB_IMAGES)  # reused once built
images = [cv2.imread(str(path)) for path in lab.production]
reference = lab.reference  # the demo model's ONNX export with the default (Ultralytics) pipeline
print(f"{len(images)} production images of {images[0].shape[1]} x {images[0].shape[0]} px; model input "
      f"{reference.imgsz} px ({reference.artifact.name})")

# %% [markdown]
# ## 1 · The symptom
#
# A colleague deployed the model with their own image loading. Here is their deployment, declared as a
# `DeploymentSpec`: the same artifact as the reference, the same size, and a preprocessing of their own. (Any
# callable `detect(image) -> Detections` can be diagnosed too; a spec lets the doctor try fixes itself.)

# %%
deployment = wb.DeploymentSpec(lab.onnx, imgsz=reference.imgsz, preprocessing=wb.Preprocessing(color="bgr"))


def compare(spec, name):
    """One row per image: the reference's boxes, the deployment's and how many agree."""
    ours, theirs = wb.open_detector(reference), wb.open_detector(spec)
    rows = []
    for path, image in zip(lab.production, images):
        counts = wb.compare_detections(ours(image), theirs(image))  # paired at IoU >= 0.5, matched: same class
        rows.append({"image": path.name, "reference": counts["reference"], name: counts["deployment"],
                     "matched": counts["matched"]})
    table = pd.DataFrame(rows)
    total = table[["reference", name, "matched"]].sum()
    recall, precision = total["matched"] / max(total["reference"], 1), total["matched"] / max(total[name], 1)
    print(f"{name}: {total[name]} boxes where the reference finds {total['reference']}; {total['matched']} agree "
          f"(it finds {recall:.0%} of the reference's boxes, and {precision:.0%} of its own boxes are the reference's)")
    return table, recall, precision


before, recall_before, precision_before = compare(deployment, "deployment")
before

# %% [markdown]
# ## 2 · Predict first
#
# Before running the doctor, look at the numbers above and write down your guess: which of the guide's checks
# will name the cause: the data, the preprocessing, the environment, the export? The images are the same for
# both deployments and so is the ONNX file: what does that rule out?

# %% [markdown]
# ## 3 · Run the doctor
#
# The doctor gets the deployment, the reference, the production images, and, for the checks that need them,
# the labelled control set (`labelled`, a data YAML), the training images and the `.pt` the reference was exported
# from (for re-exports). `out_dir` is where it writes side-by-side pictures of the evidence.

# %%
diagnosis = wb.diagnose_accuracy(
    deployment,
    reference,
    lab.production,
    labelled=lab.data_yaml,
    training_images=lab.training,
    reference_weights=lab.weights,
    out_dir=lab.root / "pictures" / "main",
)
print(wb.describe_diagnosis(diagnosis))

# %% [markdown]
# ## 4 · Read the evidence
#
# The findings are ranked: causes first, then suspects, each by the strength of its evidence. Suspects are often
# *consequences* (the stages check sees the difference first appear at preprocessing; the controlled test and the
# run see the boxes change); the cause is the finding that explains them and whose fix, applied, brings the
# metric back.

# %%
pd.DataFrame(
    [{"verdict": f.verdict.value, "check": f.check, "cause": f.cause, "strength": f.strength, "title": f.title}
     for f in diagnosis.findings]
)

# %%
top = diagnosis.most_likely
print(diagnosis.sentence())
print("\nevidence:", {k: v for k, v in top.evidence.items() if k in ("fields", "before")})
print("after the fix, measured by the doctor:", top.after)
for picture in top.pictures[:1]:
    display(Image(filename=picture))  # reference (left) and deployment (right) on one production image

# %% [markdown]
# ## 5 · Apply the fix and measure again
#
# The fix names the field to change. Rebuild the spec with it and compare with the reference again, with the same
# cell as in section 1; then let the doctor check the fixed deployment.

# %%
fixed = replace(deployment, preprocessing=replace(deployment.preprocessing, color="rgb"))
after, recall_after, precision_after = compare(fixed, "fixed")
print(f"share of the reference's boxes found: {recall_before:.0%} -> {recall_after:.0%}; "
      f"share of the deployment's boxes that are the reference's: {precision_before:.0%} -> {precision_after:.0%}")
print(wb.diagnose_accuracy(fixed, reference, lab.production, labelled=lab.data_yaml, training_images=lab.training,
                           reference_weights=lab.weights).sentence())

# %% [markdown]
# ## 6 · Exercise: another fault
#
# `EXERCISE` (in the parameters cell) picks another planted mistake. Run the symptom cell, **predict** the check
# that will name it, then run the doctor, read its sentence, and write the fix into `my_fix` (the fields of
# `wb.Preprocessing` or `wb.Postprocessing` to change) until the agreement comes back. The last cell tells you
# whether it did.

# %%
faults = {
    "stretch_not_letterbox": {"preprocessing": wb.Preprocessing(resize="stretch")},
    "wrong_pad_value": {"preprocessing": wb.Preprocessing(pad_value=0)},
    "imagenet_normalization": {"preprocessing": wb.Preprocessing(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))},
    "no_scaling": {"preprocessing": wb.Preprocessing(scale=1.0)},
    "conf_far_too_high": {"postprocessing": wb.Postprocessing(conf=0.9)},
}
exercise = replace(reference, **faults[EXERCISE])
exercise_table, exercise_recall, exercise_precision = compare(exercise, "exercise")

# %%
exercise_diagnosis = wb.diagnose_accuracy(
    exercise,
    reference,
    lab.production,
    labelled=lab.data_yaml,
    training_images=lab.training,
    reference_weights=lab.weights,
    out_dir=lab.root / "pictures" / "exercise",
)
print(wb.describe_diagnosis(exercise_diagnosis))

# %%
my_fix = {}  # your fix, e.g. {"pad_value": 114} for a preprocessing field or {"iou": 0.7} for a postprocessing one
pre_fields = set(wb.Preprocessing.__dataclass_fields__)
yours = replace(
    exercise,
    preprocessing=replace(exercise.preprocessing, **{k: v for k, v in my_fix.items() if k in pre_fields}),
    postprocessing=replace(exercise.postprocessing, **{k: v for k, v in my_fix.items() if k not in pre_fields}),
)
_, your_recall, your_precision = compare(yours, "your fix")
back = your_recall >= 0.9 and your_precision >= 0.9
print("the agreement is back" if back else "not yet: read the doctor's fix line above and fill in my_fix")
