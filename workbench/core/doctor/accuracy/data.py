"""The data check: are the production images drawn from the distribution the model was trained and validated on?

Each image is reduced to a few imaging features and each feature of the production images is compared with the
same feature of the training images by a standardized mean difference and a Kolmogorov-Smirnov test; the
features, the statistics and why their thresholds are where they are live in `data/image_shift.py`, shared with
the drift monitor.

A drift is the *cause* when it is large (|SMD| >= 1.5) or the reference model itself visibly suffers on the
production images (its mean detection confidence drops by more than 0.05, or it finds 20% fewer boxes per image
than on the training images); otherwise it is suspect. Aspect ratio is reported but never alarms: letterboxing
keeps the aspect, so it changes padding, not what the model sees. The feature that drifted most, with its
direction, names the generator's shift it looks like (dark, bright, blur, noisy, bgr_swap, lowres).

A channel swap hardly moves colour statistics over natural photographs (their red-minus-blue balance has either
sign), so it is probed through the reference model instead, which needs no training images: when the reference
is more confident on the production images with their channels reversed (mean score of its boxes up by more
than 0.03: the same images both ways, so the comparison is paired and needs no large sample; the demo model on
its own images drops by about 0.05 when they are reversed), the production images are swapped.
"""

from __future__ import annotations

from ...data.image_shift import (  # the statistics, thresholds and shift names the drift monitor uses too
    CAUSE_SMD,
    SHIFT_OF,
    SWAP_GAIN,
    drift_table,
    image_features,
    model_response,
)
from ..findings import Finding, Verdict

CONFIDENCE_DROP = 0.05
COUNT_DROP = 0.2
FIX_OF = {
    "dark": "production images are darker than the training images: fix the exposure or lighting at the camera, "
    "or fine-tune on dark images (brightness/gamma augmentation)",
    "bright": "production images are brighter (washed out): lower the exposure, or fine-tune with brightness "
    "augmentation",
    "blur": "production images are blurrier: check the focus, motion and the resize before the model, or "
    "fine-tune with blur augmentation",
    "noisy": "production images are noisier: more light or a denoise step, or fine-tune with noise augmentation",
    "bgr_swap": "production images have the red and blue channels swapped relative to training: fix the "
    "capture's channel order (BGR vs RGB) before the deployment",
    "lowres": "production images are much smaller than the training images: capture at a higher resolution",
    "compression": "production images are compressed harder: raise the JPEG quality of the capture",
}


def data_check(production, production_paths, training_paths, reference_detect) -> Finding:
    """Production images against the training images (see the module's docstring)."""
    swapped = channel_probe(production, reference_detect)
    if swapped is not None:
        return swapped
    return _drift_check(production, production_paths, training_paths, reference_detect)


def channel_probe(production, reference_detect) -> Finding | None:
    """A finding when the reference answers the channel-reversed production images clearly better."""
    as_given = model_response(reference_detect, production)
    reversed_ = model_response(reference_detect, [image[..., ::-1].copy() for image in production])
    if not reversed_["mean_score"] > as_given["mean_score"] + SWAP_GAIN:
        return None
    evidence = {"reference_model": {"as_given": as_given, "channels_reversed": reversed_}, "looks_like": "bgr_swap"}
    return Finding(
        "data",
        Verdict.CAUSE,
        "the production images have their colour channels swapped: the reference model itself is more confident "
        f"on them reversed (mean score {reversed_['mean_score']:.2f} vs {as_given['mean_score']:.2f})",
        FIX_OF["bgr_swap"],
        "data_drift_bgr_swap",
        evidence,
        strength=0.8,
    )


def _drift_check(production, production_paths, training_paths, reference_detect) -> Finding:
    from .run import read_images

    if not training_paths:
        return Finding("data", Verdict.OK, "data drift not checked: no training images given", "pass training_images=")
    training, kept, _ = read_images(list(training_paths))
    if len(training) < 2 or len(production) < 2:
        return Finding("data", Verdict.OK, "data drift not checked: fewer than 2 readable images on a side", "")
    table = drift_table(
        [image_features(i, p) for i, p in zip(production, production_paths, strict=True)],
        [image_features(i, p) for i, p in zip(training, kept, strict=True)],
    )
    drifted = {k: v for k, v in table.items() if v["drifted"]}
    evidence = {"features": table, "production_images": len(production), "training_images": len(training)}
    if not drifted:
        return Finding("data", Verdict.OK, "production images look like the training images", evidence=evidence)
    worst = max(drifted, key=lambda k: abs(drifted[k]["smd"]))
    shift = SHIFT_OF.get((worst, 1 if drifted[worst]["smd"] > 0 else -1), "other")
    response = {
        "production": model_response(reference_detect, production),
        "training": model_response(reference_detect, training),
    }
    suffers = _model_suffers(response)
    evidence.update(looks_like=shift, worst_feature=worst, reference_model=response, reference_suffers=suffers)
    cause = abs(drifted[worst]["smd"]) >= CAUSE_SMD or suffers
    return Finding(
        "data",
        Verdict.CAUSE if cause else Verdict.SUSPECT,
        f"data drift: production images differ from the training images in {', '.join(drifted)} "
        f"(worst {worst}, SMD {drifted[worst]['smd']:+.2f}); it looks like the '{shift}' shift",
        FIX_OF.get(shift, "collect production images and fine-tune on them"),
        f"data_drift_{shift}",
        evidence,
        strength=min(1.0, abs(drifted[worst]["smd"]) / 5),
    )


def _model_suffers(response: dict) -> bool:
    prod, train = response["production"], response["training"]
    fewer = train["boxes_per_image"] > 0 and prod["boxes_per_image"] < (1 - COUNT_DROP) * train["boxes_per_image"]
    return bool(fewer or prod["mean_score"] < train["mean_score"] - CONFIDENCE_DROP)
