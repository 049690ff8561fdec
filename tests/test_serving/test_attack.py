"""/v1/attack: a classifier and the generative models attacked, bad input, image checks, attack and defend metrics."""
import base64
import io

import pytest
from PIL import Image

from .helpers import assert_clear_4xx, counts_moved, decoded, metric_samples, png_b64


def test_attack_a_classifier(client):
    r = client.post("/v1/attack/classifier", json={"method": "pgd", "eps": 0.3, "steps": 10,
                                                   "indices": list(range(16))})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "classifier" and body["method"] == "pgd" and len(body["adversarial"]) == 16
    assert all(decoded(s).size == (8, 8) for s in body["adversarial"])
    assert max(body["linf"]) <= 0.3 + 1e-5 and body["summary"]["n"] == 16
    assert body["summary"]["robust_accuracy"] < body["summary"]["clean_accuracy"] - 0.3, body["summary"]
    # Validation rows come with labels: success means misclassified.
    assert sum(body["success"]) == round(16 * (1 - body["summary"]["robust_accuracy"]))
    # The adversarial PNGs go back in as inputs; a targeted attack aims them at one class.
    r = client.post("/v1/attack/classifier", json={"method": "pgd", "eps": 0.4, "steps": 20, "targeted": True,
                                                   "target": 3, "inputs": body["adversarial"][:4]})
    assert r.status_code == 200, r.text
    assert sum(p == 3 for p in r.json()["predictions_after"]) >= 3


def test_attack_generative_models(client):
    r = client.post("/v1/attack/vae", json={"method": "reconstruction", "eps": 3.0, "norm": "l2", "target": 3,
                                            "steps": 30, "indices": list(range(8))})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["reconstructions"]) == 8 and max(body["l2"]) <= 3.0 + 1e-4
    assert body["summary"]["target_rate"] >= body["summary"]["clean_target_rate"]
    r = client.post("/v1/attack/gan", json={"method": "discriminator", "eps": 0.2, "steps": 10,
                                            "indices": list(range(8))})
    assert r.status_code == 200, r.text
    assert r.json()["summary"]["mean_adv_score"] < r.json()["summary"]["mean_real_score"]
    r = client.post("/v1/attack/transformer", json={"method": "suffix", "prompt": "ROMEO:", "target_text": "the",
                                                    "suffix_len": 4, "steps": 3, "samples": 4})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["suffix"]) == 4 and body["summary"]["logprob_after"] >= body["summary"]["logprob_before"]


BAD_ATTACK = [
    ("unknown model", "nope", {"method": "pgd", "eps": 0.1, "indices": [0]}, 404, None),
    ("method not for this model", "vae", {"method": "pgd", "eps": 0.1, "indices": [0]}, 422, "method"),
    ("eps too large", "classifier", {"method": "pgd", "eps": 2.0, "indices": [0]}, 422, "eps"),
    ("no eps", "classifier", {"method": "pgd", "indices": [0]}, 422, "eps"),
    ("bad norm", "classifier", {"method": "pgd", "eps": 0.1, "norm": "l0", "indices": [0]}, 422, "norm"),
    ("too many steps", "classifier", {"method": "pgd", "eps": 0.1, "steps": 501, "indices": [0]}, 422, "steps"),
    ("target out of range", "classifier", {"method": "pgd", "eps": 0.1, "targeted": True, "target": 10,
                                           "indices": [0]}, 422, "target"),
    ("targeted without target", "classifier", {"method": "pgd", "eps": 0.1, "targeted": True,
                                               "indices": [0]}, 422, "target"),
    ("inputs and indices", "classifier", {"method": "fgsm", "eps": 0.1, "indices": [0],
                                          "inputs": ["AAAA"]}, 422, "inputs"),
    ("too many inputs", "classifier", {"method": "fgsm", "eps": 0.1, "indices": list(range(65))}, 422, "indices"),
    ("not base64", "classifier", {"method": "fgsm", "eps": 0.1, "inputs": ["%%%"]}, 422, "inputs"),
    ("suffix without a prompt", "transformer", {"method": "suffix", "target_text": "the"}, 422, "prompt"),
    ("target text outside vocabulary", "transformer", {"method": "suffix", "prompt": "A",
                                                       "target_text": "\u2603"}, 422, "target_text"),
    ("a field the method does not read", "classifier", {"method": "fgsm", "eps": 0.1, "indices": [0],
                                                        "prompt": "A"}, 422, "prompt"),
    ("image fields on a text attack", "transformer", {"method": "suffix", "prompt": "A",
                                                      "target_text": "the", "eps": 0.1}, 422, "eps"),
    ("target without targeted", "classifier", {"method": "pgd", "eps": 0.1, "target": 3,
                                               "indices": [0]}, 422, "targeted"),
    ("an L2 budget past the image's norm", "classifier", {"method": "pgd", "eps": 9, "norm": "l2",
                                                          "indices": [0]}, 422, "eps"),
    ("a generative model as judge", "vae", {"method": "reconstruction", "eps": 2.0, "norm": "l2",
                                            "target": 3, "indices": [0], "classifier": "vae"}, 422,
     "classifier"),
    ("unknown field", "classifier", {"method": "fgsm", "eps": 0.1, "indices": [0], "colour": 1}, 422, "colour"),
]


@pytest.mark.parametrize("case,model,body,status,field", BAD_ATTACK, ids=[b[0] for b in BAD_ATTACK])
def test_bad_attack_input_gets_a_clear_4xx(client, case, model, body, status, field):
    assert_clear_4xx(client.post(f"/v1/attack/{model}", json=body), status, field)


def test_images_of_another_size_or_depth_are_422s(client):
    import torch

    r = client.post("/v1/attack/classifier",
                    json={"method": "fgsm", "eps": 0.1, "inputs": [png_b64(torch.rand(1, 9, 9))]})
    assert r.status_code == 422 and "shape" in r.text
    huge = io.BytesIO()  # 24 KB of PNG that would decode to 196 megapixels
    Image.new("1", (14000, 14000)).save(huge, "PNG")
    deep = io.BytesIO()  # 16-bit pixels, which 8-bit conversion would clip to white
    Image.new("I;16", (8, 8)).save(deep, "PNG")
    for data in (huge.getvalue(), deep.getvalue()):
        r = client.post("/v1/defend/flow", json={"method": "detect", "inputs": [base64.b64encode(data).decode()]})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "inputs"], r.text


def test_robustness_metrics_and_schemas(client):
    before = metric_samples(client.get("/metrics").text)
    assert client.post("/v1/attack/classifier", json={"method": "fgsm", "eps": 0.2, "indices": [0, 1, 2]}
                       ).status_code == 200
    assert client.post("/v1/attack/classifier", json={"method": "fgsm", "eps": 9}).status_code == 422
    assert client.post("/v1/attack/classifier", json={"method": "x" * 30, "eps": 0.1}).status_code == 422
    assert client.post("/v1/defend/flow", json={"method": "detect", "indices": [0, 1]}).status_code == 200
    after = metric_samples(client.get("/metrics").text)
    for capability in ("attack", "defend"):  # every capability's requests and latency alike
        assert after[("TYPE", f"genray_{capability}_requests")] == "counter"
        assert after[("TYPE", f"genray_{capability}_latency_seconds")] == "histogram"
    assert after[("TYPE", "genray_attack_inputs")] == "counter" and after[("TYPE", "genray_defend_inputs")] == "counter"

    delta = counts_moved(before, after)
    assert delta("genray_attack_requests_total", model="classifier", method="fgsm", status="200") == 1
    assert delta("genray_attack_requests_total", model="classifier", method="fgsm", status="422") == 1
    # What a caller typed as a method never becomes a label value.
    assert delta("genray_attack_requests_total", model="classifier", method="_invalid", status="422") == 1
    assert delta("genray_attack_inputs_total", model="classifier", method="fgsm") == 3
    assert delta("genray_defend_inputs_total", model="flow", method="detect") == 2
    assert delta("genray_defend_requests_total", model="flow", method="detect", status="200") == 1
    assert delta("genray_attack_latency_seconds_count", model="classifier") == 3
    paths = client.get("/openapi.json").json()["paths"]
    for path, schema in (("/v1/attack/{model}", "method"), ("/v1/defend/{model}", "method")):
        body = paths[path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert schema in body["properties"] and "inputs" in body["properties"]
