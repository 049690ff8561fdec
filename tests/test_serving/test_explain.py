"""/v1/explain: attributions for image, sequence and series models, global methods, bad input, metrics and schema."""
import io

import pytest
from PIL import Image

from .helpers import assert_clear_4xx, counts_moved, decoded, metric_samples


def _explain(client, model: str, body: dict, status: int = 200) -> dict:
    r = client.post(f"/v1/explain/{model}", json=body)
    assert r.status_code == status, r.text
    return r.json()


def test_explain_image_models(client):
    body = _explain(client, "classifier", {"method": "ig", "indices": [0, 1], "evaluate": True})
    assert body["method"] == "ig" and len(body["attributions"]) == 2
    assert [len(body["attributions"][0]), len(body["attributions"][0][0])] == [1, 8]
    assert all(decoded(p).size[1] >= 224 for p in body["pictures"])
    assert body["described"][0]["class"] == body["described"][0]["predicted"]
    f = body["faithfulness"]
    assert {"deletion", "insertion", "infidelity", "max_sensitivity", "completeness_relative_delta"} <= set(f)
    assert len(f["deletion"]["curve"][0]) == 21 and "edge_auc" in f["insertion"]
    r = client.post("/v1/explain/classifier", json={"method": "occlusion", "indices": [3, 4], "format": "png"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    one = Image.open(io.BytesIO(r.content))
    assert one.size[1] >= 2 * 224  # two overlays, one above the other
    for model, extra in (("vae", {"indices": [0]}), ("flow", {"indices": [0]}), ("gan", {"indices": [0, 1]}),
                         ("gan", {"generated": 2, "target": 3})):
        body = _explain(client, model, {"method": "saliency", **extra})
        assert len(body["attributions"]) == len(body["pictures"]) == len(body["scores"]), model


def test_explain_sequence_and_series_models(client):
    body = _explain(client, "transformer", {"method": "ig", "prompt": "ROMEO:"})
    assert body["symbols"] == [list("ROMEO:")] and len(body["attributions"][0]) == 6
    assert body["html"][0].count("<span title=") == 6 and "next" in body["described"][0]
    assert abs(sum(body["attributions"][0]) - (body["scores"][0] - body["baseline_scores"][0])) < 0.05
    body = _explain(client, "rnn", {"method": "occlusion", "prompt": "KING", "target": " of"})
    assert body["described"][0]["continuation"] == " of" and len(body["attributions"][0]) == 4
    body = _explain(client, "chorale", {"method": "saliency", "prompt": "G4/1 A4/1 B4/1"})
    assert body["symbols"] == [["G4/1", "A4/1", "B4/1"]]
    body = _explain(client, "markov", {"method": "exact", "prompt": "ROMEO:"})
    assert abs(sum(body["attributions"][0]) - (body["scores"][0] - body["baseline_scores"][0])) < 1e-9
    history = [5.0, 20.0, 60.0, 110.0, 140.0, 120.0, 80.0, 40.0, 15.0, 8.0, 3.0, 9.0, 30.0, 70.0, 100.0, 90.0,
               60.0, 30.0, 10.0, 5.0]
    body = _explain(client, "ar", {"method": "ig", "series": history, "baseline": 0.0})
    assert len(body["attributions"][0]) == len(history) and body["described"][0]["forecast"] == body["scores"][0]


def test_explain_global_methods(client):
    body = _explain(client, "vae", {"method": "pdp", "indices": [0, 1, 2, 3], "feature": 1, "grid": 5})
    c = body["curves"]
    assert len(c["grid"]) == 5 and len(c["ice"]) == 4 and len(c["pdp"]) == 5 and body["pictures"]
    assert all(0 <= v <= 1 for row in c["ice"] for v in row)
    r = client.post("/v1/explain/gan", json={"method": "traversal", "dims": [0, 1, 2], "grid": 6, "format": "png",
                                             "target": 2})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    body = _explain(client, "gan", {"method": "pdp", "n": 4, "feature": 3})
    assert len(body["curves"]["ice"]) == 4 and "discriminator" in body["curves"]["readout"]
    history = [float(v) for v in range(40)]
    body = _explain(client, "ar", {"method": "pdp", "series": history, "feature": 1, "grid": 4})
    assert len(body["curves"]["ice"]) >= 1 and len(body["curves"]["grid"]) == 4


BAD_EXPLAIN = [
    ("unknown model", "nope", {"method": "ig", "indices": [0]}, 404, None),
    ("unknown method", "classifier", {"method": "magic", "indices": [0]}, 422, "method"),
    ("exact on a classifier", "classifier", {"method": "exact", "indices": [0]}, 422, "method"),
    ("ig on a markov chain", "markov", {"method": "ig", "prompt": "A"}, 422, "method"),
    ("pdp on a classifier", "classifier", {"method": "pdp", "indices": [0]}, 422, "method"),
    ("too many inputs", "classifier", {"method": "ig", "indices": list(range(65))}, 422, "indices"),
    ("too many steps", "classifier", {"method": "ig", "indices": [0], "n_steps": 513}, 422, "n_steps"),
    ("too many samples", "classifier", {"method": "lime", "indices": [0], "n_samples": 2001}, 422, "n_samples"),
    ("steps on saliency", "classifier", {"method": "saliency", "indices": [0], "n_steps": 10}, 422, "n_steps"),
    ("a prompt for an image model", "classifier", {"method": "ig", "indices": [0], "prompt": "A"}, 422, "prompt"),
    ("no input", "classifier", {"method": "ig"}, 422, "inputs"),
    ("no prompt", "transformer", {"method": "ig"}, 422, "prompt"),
    ("no series", "ar", {"method": "ig"}, 422, "series"),
    ("png of text", "transformer", {"method": "ig", "prompt": "A", "format": "png"}, 422, "format"),
    ("bad format", "classifier", {"method": "ig", "indices": [0], "format": "gif"}, 422, "format"),
    ("class out of range", "classifier", {"method": "ig", "indices": [0], "target": 10}, 422, "target"),
    ("text target for an image model", "classifier", {"method": "ig", "indices": [0], "target": "a"}, 422, "target"),
    ("symbol outside the vocabulary", "transformer", {"method": "ig", "prompt": "A", "target": "\u2603"}, 422,
     "target"),
    ("prompt outside the vocabulary", "transformer", {"method": "ig", "prompt": "\u2603"}, 422, "prompt"),
    ("bad baseline", "classifier", {"method": "ig", "indices": [0], "baseline": "sky"}, 422, "baseline"),
    ("patch larger than the image", "classifier", {"method": "lime", "indices": [0], "patch": 9}, 422, "patch"),
    ("latent out of range", "vae", {"method": "pdp", "indices": [0], "feature": 999}, 422, "feature"),
    ("index out of range", "classifier", {"method": "ig", "indices": [100000]}, 422, "indices"),
    ("conditional gan without a class", "gan", {"method": "ig", "generated": 1}, 422, "target"),
    ("generated on a classifier", "classifier", {"method": "ig", "generated": 2}, 422, "generated"),
    ("unknown field", "classifier", {"method": "ig", "indices": [0], "colour": 1}, 422, "colour"),
]


@pytest.mark.parametrize("case,model,body,status,field", BAD_EXPLAIN, ids=[b[0] for b in BAD_EXPLAIN])
def test_bad_explain_input_gets_a_clear_4xx(client, case, model, body, status, field):
    assert_clear_4xx(client.post(f"/v1/explain/{model}", json=body), status, field)


def test_explain_metrics_and_schema(client):
    before = metric_samples(client.get("/metrics").text)
    _explain(client, "classifier", {"method": "saliency", "indices": [0, 1], "evaluate": True})
    _explain(client, "classifier", {"method": "saliency", "indices": [0], "n_steps": 3}, status=422)
    _explain(client, "classifier", {"method": "y" * 20, "indices": [0]}, status=422)
    after = metric_samples(client.get("/metrics").text)
    assert after[("TYPE", "genray_explain_requests")] == "counter"
    assert after[("TYPE", "genray_explain_latency_seconds")] == "histogram"
    assert after[("TYPE", "genray_explain_deletion_auc_ratio")] == "summary"

    delta = counts_moved(before, after)
    assert delta("genray_explain_requests_total", model="classifier", method="saliency", status="200") == 1
    assert delta("genray_explain_requests_total", model="classifier", method="saliency", status="422") == 1
    assert delta("genray_explain_requests_total", model="classifier", method="_invalid", status="422") == 1
    assert delta("genray_explain_latency_seconds_count", method="saliency") == 2
    assert delta("genray_explain_deletion_auc_ratio_count", model="classifier", method="saliency") >= 1
    paths = client.get("/openapi.json").json()["paths"]
    body = paths["/v1/explain/{model}"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert {"method", "inputs", "prompt", "series", "n_steps", "n_samples", "evaluate", "format"} <= set(
        body["properties"])
