"""The explanation server behind /v1/explain: one autoscaled deployment of its own, with a short
queue, so that explanations (up to thousands of forward passes each) wait or are refused with a
503 while generation goes on in its own deployments.

What each family's explanation is about is models/explain/targets.py's business; this module
turns a request into inputs, runs the method, and draws the pictures."""
from __future__ import annotations

import io

import torch
from PIL import Image
from ray import serve

from genray.models.errors import OptionError
from genray.models.explain import dependence, explain
from genray.models.explain.catalog import global_input, input_kind, scores_images
from genray.models.explain.faithfulness import evaluate
from genray.models.explain.render import curves_png, grid_png, heatmap_png, text_html
from genray.models.modalities.base import b64
from genray.services.generate import error_result
from genray.services.workbench import Workbench

ICE_WINDOWS = 16  # ar pdp: ICE curves for the windows ending at the series' last positions


def _images(bench: Workbench, model, rec, req: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The request's images in [0, 1] and, for test rows, their labels; a GAN's own samples."""
    if req.get("generated"):
        from genray.models.base import seeded

        n = req["generated"]
        label = req.get("target")
        images = model.sample(n, generator=[seeded(req.get("seed", 0) + i) for i in range(n)],
                              **({"label": label} if model.num_classes else {}))
        return torch.stack(list(images)), None
    return bench.images(req, rec, model.shape)


def stacked_png(pngs: list[bytes]) -> bytes:
    """Pictures one above the other, in one PNG."""
    images = [Image.open(io.BytesIO(p)).convert("RGB") for p in pngs]
    out = Image.new("RGB", (max(i.width for i in images), sum(i.height for i in images)), "white")
    y = 0
    for i in images:
        out.paste(i, (0, y))
        y += i.height
    buf = io.BytesIO()
    out.save(buf, format="PNG")
    return buf.getvalue()


def run_explain(bench: Workbench, ref: str, req: dict) -> dict:
    model, rec = bench.model(ref)
    method = req["method"]
    if method in ("pdp", "traversal"):
        out = _global(bench, model, rec, req)
    else:
        out = _attribute(bench, model, rec, req)
    if req.get("format") == "png":
        return {"png": stacked_png(out["pictures"])}  # bytes: the gateway answers with them as they are
    return {**out, "pictures": [b64(p) for p in out.get("pictures", [])]}


def _attribute(bench: Workbench, model, rec, req: dict) -> dict:
    kind = input_kind(rec.config)
    target = req.get("target")
    if kind == "image":
        x, labels = _images(bench, model, rec, req)
        if target is None and labels is not None and scores_images(rec.config) and model.num_classes:
            target = labels  # test rows: a discriminator is asked about their own class
        inputs = x
    else:
        inputs = req["prompt"] if kind == "prompt" else req["series"]
    options = {k: req[k] for k in ("n_steps", "n_samples") if req.get(k) is not None}
    ex = explain(model, inputs, method=req["method"], target=target, baseline=req.get("baseline"),
                 patch=req.get("patch"), seed=req.get("seed", 0), **options)
    out = {"described": ex.described, "attributions": ex.attributions.tolist(), "scores": ex.scores.tolist(),
           "baseline_scores": [] if ex.baseline_scores is None else ex.baseline_scores.tolist(),
           "diagnostics": ex.diagnostics}
    if kind == "image":
        out["pictures"] = [heatmap_png(img, a) for img, a in zip(x, ex.attributions)]
    elif kind == "prompt":
        out["symbols"] = ex.symbols
        out["html"] = [text_html(s, a.tolist()) for s, a in zip(ex.symbols, ex.attributions)]
    if req.get("evaluate"):
        if ex.explainable is None:
            raise OptionError("method 'exact' is exact: there is nothing to evaluate", "evaluate")
        out["faithfulness"] = evaluate(ex, **options)
    return out


def _global(bench: Workbench, model, rec, req: dict) -> dict:
    method, start, grid = req["method"], global_input(rec.config), req.get("grid", 9)
    if start == "series":
        series = torch.as_tensor(req["series"], dtype=torch.float64)
        p = model.max_order
        if len(series) < p:
            raise OptionError(f"series needs at least {p} values (the model's max_order) for pdp", "series")
        ends = range(max(p, len(series) - ICE_WINDOWS + 1), len(series) + 1)
        lag = 1 if req.get("feature") is None else req["feature"]
        c = dependence.lag_curves(model, torch.stack([series[e - p:e] for e in ends]), lag, grid)
        picture = curves_png(c.grid, c.ice, c.feature, c.readout, f"{rec.name}: partial dependence")
        return {"curves": c.to_json(), "pictures": [picture]}
    if start == "image":  # encoded to the latent
        x, _ = _images(bench, model, rec, req)
        z, y = dependence.latents(model, x, len(x), None, 0)
    else:
        z, y = dependence.latents(model, None, req.get("n", 16) if method == "pdp" else 1,
                            req.get("target") if method == "traversal" else None, req.get("seed", 0))
    if method == "traversal":
        dims = req.get("dims") or list(range(min(8, model.latent_dim)))
        picture = grid_png(dependence.traversal(model, z, y, dims, grid))
        return {"pictures": [picture], "curves": {"dims": dims, "offsets": torch.linspace(
            -dependence.LATENT_RANGE, dependence.LATENT_RANGE, grid).tolist()}}
    # A model that scores images itself (a discriminator) is read directly unless a classifier is named.
    judge = bench.judge(req.get("classifier"), rec) if not scores_images(rec.config) or req.get("classifier") \
        else None
    c = dependence.latent_curves(model, z, y, req.get("feature") or 0, grid, judge=judge, target=req.get("target"))
    picture = curves_png(c.grid, c.ice, c.feature, c.readout, f"{rec.name}: partial dependence")
    return {"curves": c.to_json(), "pictures": [picture]}


@serve.deployment
class ExplainServer:
    """Explains the registry models it was given."""

    def __init__(self, storage_uri: str, refs: dict[str, str], threads: int = 1):
        torch.set_num_threads(threads)
        self.bench = Workbench(storage_uri, refs)

    # A coroutine that computes inline: one request runs at a time per replica (max_ongoing_requests
    # 1), so nothing waits on the loop, and it saves the thread hop of a synchronous method (about
    # 15 ms of 85 for IG on an MNIST digit, on 2 cores).
    async def explain(self, payload: dict) -> dict:
        try:
            return run_explain(self.bench, self.bench.refs[payload["model"]], payload)
        except Exception as e:  # noqa: BLE001 - each failure becomes this request's error result
            return error_result(e)
