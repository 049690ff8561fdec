"""POST /v1/defend/{model}: a VAE or flow model defends a classifier by purification (reconstruct,
then classify) or flags inputs by their likelihood, calibrated to a 5% false-positive rate on
validation images. Served with /v1/attack."""
from __future__ import annotations

from typing import Optional

import torch
from pydantic import ConfigDict, Field, StrictStr

from genray.models.robustness import Purifier, anomaly_scores
from genray.models.robustness.catalog import defense_methods
from genray.services.schemas import Answer, ImageInputs, check_images, field_error, unused
from genray.services.spec import INVALID, Capability, Limits, Metric, count_bools
from genray.services.workbench import pngs


class DefendRequest(ImageInputs):
    model_config = ConfigDict(extra="forbid")

    method: StrictStr = Field(..., max_length=32, description="purify (reconstruct, then classify) | detect "
                                                             "(likelihood scores)")
    classifier: Optional[StrictStr] = Field(None, max_length=80, description="purify: the classifier to predict with "
                                                                              "(default: one trained on the same data)")


class DefendResponse(Answer):
    method: str
    purified: list[str] = Field(default_factory=list, description="purify: base64 PNG of each purified input")
    predictions_before: list[int] = Field(default_factory=list, description="purify: the classifier on the inputs")
    predictions_after: list[int] = Field(default_factory=list, description="purify: ... and on the purified inputs")
    scores: list[float] = Field(default_factory=list, description="detect: anomaly score (bits/dim)")
    flagged: list[bool] = Field(default_factory=list, description="detect: score above the threshold")
    threshold: Optional[float] = Field(None, description="detect: the score that 5% of validation images exceed")


FIELDS = {"detect": frozenset({"inputs", "indices"}), "purify": frozenset({"inputs", "indices", "classifier"})}


def check(req: DefendRequest, config: dict) -> list[dict]:
    methods = defense_methods(config)
    if req.method not in methods:
        return [field_error("method", f"{config['family']} models take the defense method(s) {list(methods)}, "
                                      f"not {req.method!r}")]
    return unused(req, req.method, FIELDS[req.method]) + check_images(req)


def run(job, req: DefendRequest) -> dict:
    model, rec = job.load()
    x, _ = job.bench.images(req, rec, model.shape)
    if req.method == "detect":
        scores = anomaly_scores(model, x)
        t = job.bench.threshold(rec, model)
        return {"method": "detect", "scores": scores.tolist(), "flagged": (scores > t).tolist(), "threshold": t}
    classifier = job.bench.judge(req.classifier, rec)
    with torch.no_grad():
        purified = Purifier(model)(x).detach()
        before, after = classifier(x).argmax(1), classifier(purified).argmax(1)
    return {"method": "purify", "purified": pngs(purified), "predictions_before": before.tolist(),
            "predictions_after": after.tolist()}


def observe(metrics: dict, model: str, method: str, req, result: dict) -> None:
    if result.get("threshold") is None:  # purification flags nothing
        metrics["defend_inputs"].labels(model, method, "none").inc(len(result.get("purified", [])))
    else:
        count_bools(metrics["defend_inputs"], (model, method), result["flagged"])


SPEC = Capability(
    name="defend", summary="A generative model's defense: purification or likelihood detection (attack scope).",
    request=DefendRequest, response=DefendResponse, run=run, check=check, scope="attack", part_of="attack",
    serves=lambda rec: bool(defense_methods(rec.config)),
    method=lambda req, config: req.method if req.method in defense_methods(config) else INVALID,
    limits=Limits(max_ongoing=1, max_queued=8, cpus=0.5, threaded=False),
    metrics=(Metric("counter", "defend_inputs", "Inputs defended, by whether the detector flagged them ('none' "
                    "for purification)", ("model", "method", "flagged")),),
    observe=observe,
)
