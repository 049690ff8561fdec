"""Pictures of explanations: heatmap overlays (PNG), shaded text (HTML), curves (PNG, matplotlib)
and latent-traversal grids (PNG). Red is evidence for the explained quantity, blue against."""
from __future__ import annotations

import html
import io

import numpy as np
from PIL import Image
from torch import Tensor

MIN_SIDE, MAX_SIDE = 224, 2048  # small pictures are enlarged (nearest neighbour) to this many pixels


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _rgb(image: Tensor) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (H, W, 3) float."""
    x = image.detach().float().cpu().clamp(0, 1)
    x = x.expand(3, -1, -1) if x.shape[0] == 1 else x[:3]
    return x.permute(1, 2, 0).numpy()


def _enlarge(arr: np.ndarray) -> np.ndarray:
    k = max(1, min(-(-MIN_SIDE // min(arr.shape[:2])), MAX_SIDE // max(arr.shape[:2])))
    return arr.repeat(k, 0).repeat(k, 1)


def signed_colors(values: np.ndarray) -> np.ndarray:
    """Values scaled to [-1, 1] -> RGBA (..., 4) from matplotlib's RdBu_r, alpha = |value|."""
    from matplotlib import colormaps

    rgba = colormaps["RdBu_r"]((values + 1) / 2)
    rgba[..., 3] = np.abs(values)
    return rgba


def heatmap_png(image: Tensor, attribution: Tensor) -> bytes:
    """The image and, beside it, the image in grey under its attribution (summed over channels)."""
    base = _rgb(image)
    a = attribution.detach().float().cpu().reshape(-1, *image.shape[1:]).sum(0).numpy()  # (H, W)
    a = a / max(float(np.abs(a).max()), 1e-12)
    rgba = signed_colors(a)
    grey = np.repeat(base.mean(2, keepdims=True), 3, 2) * 0.5 + 0.25
    over = grey * (1 - rgba[..., 3:]) + rgba[..., :3] * rgba[..., 3:]
    gap = np.ones((base.shape[0], max(1, base.shape[1] // 14), 3))
    both = np.concatenate([base, gap, over], 1)
    return _png(_enlarge((both * 255).round().astype(np.uint8)))


def text_html(symbols: list[str], scores: list[float]) -> str:
    """Each symbol in a span shaded by its score (red for, blue against), the score in its title."""
    top = max((abs(s) for s in scores), default=0.0) or 1.0
    spans = []
    for sym, s in zip(symbols, scores):
        r, g, b, _ = (signed_colors(np.array([s / top]))[0] * 255).round().astype(int)
        shown = html.escape(sym).replace("\n", "&#8629;<br>").replace(" ", "&nbsp;")
        spans.append(f'<span title="{s:.4g}" style="background-color: rgba({r},{g},{b},{abs(s) / top:.2f})">'
                     f"{shown}</span>")
    return '<span class="genray-attribution" style="font-family: monospace">' + "".join(spans) + "</span>"


def curves_png(grid: Tensor, ice: Tensor, xlabel: str, ylabel: str, title: str) -> bytes:
    """ICE curves (thin, grey) and their mean, the PDP (thick)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    g = grid.cpu().numpy()
    for row in ice.cpu().numpy():
        ax.plot(g, row, color="0.6", linewidth=0.7, alpha=0.7)
    ax.plot(g, ice.mean(0).cpu().numpy(), color="C3", linewidth=2.5, label="PDP (mean of the ICE curves)")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def grid_png(images: Tensor) -> bytes:
    """(R, K, C, H, W) in [0, 1] -> one PNG of R rows of K images, a pixel of white between."""
    R, K, C, H, W = images.shape
    canvas = np.ones((R * (H + 1) - 1, K * (W + 1) - 1, 3))
    for r in range(R):
        for k in range(K):
            canvas[r * (H + 1):r * (H + 1) + H, k * (W + 1):k * (W + 1) + W] = _rgb(images[r, k])
    return _png(_enlarge((canvas * 255).round().astype(np.uint8)))

