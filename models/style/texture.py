"""Texture statistics that no style optimiser in genray sees, to score style transfer with: the
random-feature Gram matrices the optimiser lowers would otherwise grade their own work.

Three classical descriptors from scikit-image, on the grey image:

    gabor   mean and standard deviation of the response magnitude of a Gabor filter bank
            (3 frequencies x 4 orientations): oriented texture energy
    lbp     histograms of uniform local binary patterns at radius 1 (8 neighbours) and 2 (16)
    glcm    grey-level co-occurrence contrast, homogeneity, energy and correlation at distances
            1, 2 and 4 (mean over 4 directions)

`texture_distance(a, b)` is each descriptor's distance (relative L2 for gabor and glcm, total
variation for the histograms); `texture_fall(out, content, style)` is how much of the content's
distance to the style the output removed, per descriptor (1 = all of it, 0 = none, < 0 = further).
"""
from __future__ import annotations

import numpy as np
import torch

FREQUENCIES = (0.1, 0.2, 0.35)
ORIENTATIONS = (0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4)
LBP = ((8, 1), (16, 2))
GLCM_DISTANCES = (1, 2, 4)
GLCM_PROPS = ("contrast", "homogeneity", "energy", "correlation")
DESCRIPTORS = ("gabor", "lbp", "glcm")


def _grey(image: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (H, W) float64 luminance (ITU-R 601)."""
    a = image.detach().float().cpu().numpy()
    if a.shape[0] >= 3:
        return (0.299 * a[0] + 0.587 * a[1] + 0.114 * a[2]).astype(np.float64)
    return a[0].astype(np.float64)


def texture_stats(image: torch.Tensor) -> dict[str, np.ndarray]:
    """The three descriptors of an image (C, H, W) in [0, 1]."""
    from scipy import ndimage
    from skimage.feature import graycomatrix, graycoprops, local_binary_pattern
    from skimage.filters import gabor_kernel

    g = _grey(image)
    gabor = []
    for f in FREQUENCIES:
        for theta in ORIENTATIONS:
            k = gabor_kernel(f, theta=theta)
            mag = np.hypot(ndimage.convolve(g, np.real(k), mode="wrap"), ndimage.convolve(g, np.imag(k), mode="wrap"))
            gabor += [mag.mean(), mag.std()]
    levels = np.clip(np.round(g * 255), 0, 255).astype(np.uint8)
    lbp = []
    for p, r in LBP:
        codes = local_binary_pattern(levels, p, r, method="uniform")
        hist, _ = np.histogram(codes, bins=p + 2, range=(0, p + 2))
        lbp.append(hist / hist.sum())
    quantised = (levels // 8).astype(np.uint8)  # 32 grey levels: co-occurrence counts that are not all zeros
    m = graycomatrix(quantised, distances=GLCM_DISTANCES, angles=ORIENTATIONS, levels=32, symmetric=True,
                     normed=True)
    glcm = np.concatenate([graycoprops(m, prop).mean(1) for prop in GLCM_PROPS])
    return {"gabor": np.asarray(gabor), "lbp": np.concatenate(lbp), "glcm": glcm}


def texture_distance(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, float]:
    out = {}
    for k in ("gabor", "glcm"):
        scale = np.abs(a[k]) + np.abs(b[k]) + 1e-12
        out[k] = float(np.sqrt(np.mean(((a[k] - b[k]) / scale) ** 2)))
    out["lbp"] = float(0.5 * np.abs(a["lbp"] - b["lbp"]).sum() / len(LBP))
    return out


Image = torch.Tensor | dict  # an image (C, H, W), or its texture_stats


def texture_fall(out: Image, content: Image, style: Image) -> dict[str, float]:
    """Per descriptor, 1 - d(out, style) / d(content, style): the share of the content's texture
    distance to the style that the output removed. Each argument is an image or its texture_stats."""
    out, content, style = (x if isinstance(x, dict) else texture_stats(x) for x in (out, content, style))
    before, after = texture_distance(content, style), texture_distance(out, style)
    return {k: 1.0 - after[k] / max(before[k], 1e-12) for k in DESCRIPTORS}
