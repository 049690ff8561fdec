"""The robustness server behind /v1/attack and /v1/defend: one autoscaled deployment of its own,
with a short queue, so that attacks (tens to hundreds of forward and backward passes each) wait
or are refused with a 503 while generation goes on in its own deployments.

Which attacks and defenses a model takes follows from its family (models/robustness/catalog.py);
inputs are PNGs of the model's shape or rows of its data set's test split, in the evaluation
order (models/splits.py)."""
from __future__ import annotations

import logging

import torch
from ray import serve

from genray.models.errors import OptionError
from genray.models.robustness import (
    Purifier,
    anomaly_scores,
    attack,
    discriminator_attack,
    reconstruction_attack,
    suffix_attack,
)
from genray.services.generate import error_result
from genray.services.workbench import Workbench, pngs

log = logging.getLogger("ray.serve")


# Fields of the attack functions that a request names otherwise.
REQUEST_FIELDS = {"target": "target_text", "x": "inputs", "labels": "indices"}


def run_attack(bench: Workbench, ref: str, req: dict) -> dict:
    try:
        return _attack(bench, ref, req)
    except OptionError as e:
        if req["method"] == "suffix" or e.field != "target":
            e.field = REQUEST_FIELDS.get(e.field, e.field)
        raise


def _attack(bench: Workbench, ref: str, req: dict) -> dict:
    model, rec = bench.model(ref)
    method = req["method"]
    steps = req.get("steps")  # None: the evasion method's own default (40; 100 for APGD and AutoAttack)
    common = {"eps": req.get("eps"), "norm": req.get("norm", "linf"), "steps": 40 if steps is None else steps,
              "step_size": req.get("step_size"), "seed": req.get("seed", 0)}
    if method == "suffix":
        r = suffix_attack(model, req["prompt"], req["target_text"], suffix_len=req.get("suffix_len", 10),
                          steps=common["steps"], samples=req.get("samples", 32), seed=common["seed"])
        return {"summary": r.summary(), "suffix": r.suffix}
    x, y = bench.images(req, rec, model.shape)
    if method == "reconstruction":
        if req.get("target") is None:
            raise OptionError("the reconstruction attack needs a target class", "target")
        r = reconstruction_attack(model, x, target=req["target"], classifier=bench.judge(req.get("classifier"), rec),
                                  **common)
        return {"summary": r.summary(), "clean": pngs(x), "adversarial": pngs(r.x_adv),
                "reconstructions": pngs(r.recon),
                "clean_predictions": r.clean_recon_pred.tolist(), "adversarial_predictions": r.recon_pred.tolist(),
                "success": r.success.tolist(), "linf": r.linf.tolist(), "l2": r.l2.tolist()}
    if method == "discriminator":
        if model.num_classes and y is None:
            raise OptionError("this GAN's discriminator is conditioned on each image's class: send test rows "
                              "('indices'), whose labels it takes", "indices")
        r = discriminator_attack(model, x, y if model.num_classes else None, **common)
        return {"summary": r.summary(), "clean": pngs(x), "adversarial": pngs(r.x_adv), "success": r.fooled.tolist(),
                "linf": r.linf.tolist(), "l2": r.l2.tolist()}
    r = attack(model, x, y, method=method, targeted=req.get("targeted", False), target=req.get("target"),
               restarts=req.get("restarts", 1), **{**common, "steps": steps})
    return {"summary": r.summary(), "clean": pngs(x), "adversarial": pngs(r.x_adv),
            "clean_predictions": r.clean_pred.tolist(),
            "adversarial_predictions": r.adv_pred.tolist(), "success": r.success.tolist(), "linf": r.linf.tolist(),
            "l2": r.l2.tolist()}


def run_defense(bench: Workbench, ref: str, req: dict) -> dict:
    model, rec = bench.model(ref)
    x, _ = bench.images(req, rec, model.shape)
    if req["method"] == "detect":
        scores = anomaly_scores(model, x)
        t = bench.threshold(rec, model)
        return {"scores": scores.tolist(), "flagged": (scores > t).tolist(), "threshold": t}
    classifier = bench.judge(req.get("classifier"), rec)
    with torch.no_grad():
        purified = Purifier(model)(x).detach()
        before, after = classifier(x).argmax(1), classifier(purified).argmax(1)
    return {"purified": pngs(purified), "predictions": after.tolist(), "predictions_before": before.tolist()}


@serve.deployment
class RobustnessServer:
    """Runs attacks and defenses on the registry models it was given."""

    def __init__(self, storage_uri: str, refs: dict[str, str], threads: int = 1):
        torch.set_num_threads(threads)
        self.bench = Workbench(storage_uri, refs)

    def _run(self, fn, payload: dict) -> dict:
        try:
            return fn(self.bench, self.bench.refs[payload["model"]], payload)
        except Exception as e:  # noqa: BLE001 - each failure becomes this request's error result
            return error_result(e)

    # Coroutines that compute inline: one request runs at a time per replica, so nothing waits on
    # the loop, and the thread hop of a synchronous method is saved.
    async def attack(self, payload: dict) -> dict:
        return self._run(run_attack, payload)

    async def defend(self, payload: dict) -> dict:
        return self._run(run_defense, payload)
