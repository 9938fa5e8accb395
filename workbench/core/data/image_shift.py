"""Whether two sets of images come from one distribution: a few imaging features per image and two-sample
statistics per feature, shared by the accuracy doctor's data check and the drift monitor of a served variant, so
that a diagnosis and a drift alert measure and name a shift alike.

Each image is reduced to a few imaging features (brightness, contrast, colour balance, sharpness, noise, size,
aspect ratio, JPEG quality), and each feature of the production images is compared with the same feature of the
training images by two statistics:

- the standardized mean difference (SMD, Cohen's d with the pooled standard deviation): how far the means are
  apart in units of the spread. 0.2 is small, 0.5 medium, 0.8 large (Cohen); covariate-balance practice treats
  0.1-0.25 as "balanced", but with the few images a doctor sees (8-50 per side) the SMD of two samples of the
  *same* distribution has a standard error of about sqrt(2 / n), 0.5 at n = 8, so a feature counts as drifted
  only at |SMD| >= 0.8 *and*
- the two-sample Kolmogorov-Smirnov test (scipy's `ks_2samp` where installed, else the asymptotic formula in
  numpy) at p < 0.05 divided by the number of features (Bonferroni), so that eight features tested at once still
  raise a false alarm on at most about 5% of identical distributions; or
- a large shift, |SMD| >= 1.5, with the KS test at p < 0.05 uncorrected: under the null the SMD of two samples of
  8 exceeds 1.5 (three standard errors) for about 0.3% of features, so the multiplicity correction is not
  needed there, and with 8 images a side the KS test cannot reach the corrected level unless the samples are
  fully separated.

Aspect ratio is reported but never alarms: letterboxing keeps the aspect, so it changes padding, not what the
model sees. The feature that drifted most, with its direction, names the generator's shift it looks like (dark,
bright, blur, noisy, bgr_swap, lowres).

A channel swap hardly moves colour statistics over natural photographs (their red-minus-blue balance has either
sign), so it is probed through a reference model instead (`model_response` on the images as given and with their
channels reversed): when the reference is more confident on the reversed images (mean score of its boxes up by
more than `SWAP_GAIN`), the images are swapped.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

DRIFT_SMD = 0.8
CAUSE_SMD = 1.5
FAMILY_P = 0.05
SWAP_GAIN = 0.03
QUIET = ("aspect",)  # reported, never alarms
# the generator's shift each feature's drift looks like, by direction (+1 up, -1 down)
SHIFT_OF = {
    ("brightness", -1): "dark",
    ("brightness", 1): "bright",
    ("sharpness", -1): "blur",
    ("noise", 1): "noisy",
    ("noise", -1): "blur",
    ("sharpness", 1): "noisy",
    ("red_minus_blue", 1): "bgr_swap",
    ("red_minus_blue", -1): "bgr_swap",
    ("size", -1): "lowres",
    ("contrast", -1): "dark",
    ("contrast", 1): "bright",
    ("jpeg_quality", -1): "compression",
}


def image_features(image: np.ndarray, path: Path | None = None) -> dict[str, float]:
    """The imaging features of one BGR uint8 image (see the module's docstring)."""
    import cv2

    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)
    means = image.reshape(-1, 3).mean(0)
    kernel = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
    noise = math.sqrt(math.pi / 2) * float(np.abs(cv2.filter2D(gray, -1, kernel)[1:-1, 1:-1]).mean()) / 6
    h, w = image.shape[:2]
    return {
        "brightness": float(gray.mean()),
        "contrast": float(gray.std()),
        "red_minus_blue": float(means[2] - means[0]),
        "sharpness": float(np.log10(cv2.Laplacian(gray, cv2.CV_32F).var() + 1e-6)),
        "noise": noise,  # Immerkaer's estimate of the noise sigma
        "size": float(math.sqrt(h * w)),
        "aspect": float(w / h),
        "jpeg_quality": jpeg_quality(path) if path is not None else 100.0,
    }


def jpeg_quality(path: Path) -> float:
    """The IJG quality (1-100) a JPEG was saved at, estimated from its luminance quantization table; 100 for a
    lossless file."""
    from PIL import Image

    base = np.array([16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55] + [0] * 48, np.float64)
    try:
        with Image.open(path) as opened:
            tables = getattr(opened, "quantization", None)
    except Exception:  # Pillow raises several types; the decode check reports unreadable files
        return 100.0
    if not tables:
        return 100.0
    table = np.asarray(tables[0] if 0 in tables else next(iter(tables.values())), np.float64)[:16]
    scale = float(np.mean(table / base[:16])) * 100
    quality = 5000 / scale if scale > 100 else (200 - scale) / 2
    return float(np.clip(quality, 1, 100))


def ks_pvalue(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov p-value: scipy's exact/asymptotic test where installed, else the asymptotic
    Kolmogorov distribution in numpy."""
    try:
        from scipy.stats import ks_2samp

        return float(ks_2samp(a, b).pvalue)
    except ImportError:
        grid = np.sort(np.concatenate([a, b]))
        cdf = lambda x: np.searchsorted(np.sort(x), grid, side="right") / len(x)  # noqa: E731
        d = float(np.abs(cdf(a) - cdf(b)).max())
        n = len(a) * len(b) / (len(a) + len(b))
        lam = (math.sqrt(n) + 0.12 + 0.11 / math.sqrt(n)) * d
        return float(
            min(1.0, max(0.0, 2 * sum((-1) ** (k - 1) * math.exp(-2 * k * k * lam * lam) for k in range(1, 101))))
        )


def smd(production: np.ndarray, training: np.ndarray) -> float:
    """Standardized mean difference (production - training) / pooled standard deviation."""
    pooled = (
        math.sqrt((production.var(ddof=1) + training.var(ddof=1)) / 2) if min(len(production), len(training)) > 1 else 0
    )
    difference = float(production.mean() - training.mean())
    if pooled < 1e-9:
        return 0.0 if abs(difference) < 1e-9 else math.copysign(99.0, difference)
    return difference / pooled


def drift_table(production: list[dict], training: list[dict]) -> dict[str, dict]:
    """Per feature: both means, the SMD, the KS p-value and whether it counts as drifted."""
    names = list(production[0])
    threshold = FAMILY_P / (len(names) - len(QUIET))
    table = {}
    for name in names:
        p = np.array([f[name] for f in production], np.float64)
        t = np.array([f[name] for f in training], np.float64)
        d, pvalue = smd(p, t), ks_pvalue(p, t)
        drifted = name not in QUIET and (
            (abs(d) >= DRIFT_SMD and pvalue < threshold) or (abs(d) >= CAUSE_SMD and pvalue < FAMILY_P)
        )
        table[name] = {
            "production": round(float(p.mean()), 3),
            "training": round(float(t.mean()), 3),
            "smd": round(d, 3),
            "ks_p": round(pvalue, 5),
            "drifted": bool(drifted),
        }
    return table


def model_response(detect, images: list[np.ndarray]) -> dict:
    """How the reference model answers a set of images: boxes per image and mean confidence of its boxes."""
    found = [detect(image) for image in images]
    scores = np.concatenate([d.scores for d in found]) if found else np.zeros(0)
    return {
        "boxes_per_image": float(np.mean([len(d) for d in found])),
        "mean_score": float(scores.mean()) if len(scores) else 0.0,
    }
