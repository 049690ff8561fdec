"""/v1/defend: noise detected by the flow, digits purified by the VAE, and bad input."""
import pytest

from .helpers import assert_clear_4xx, decoded, png_b64


def test_defend_detects_noise_and_purifies(client):
    import torch

    noise = png_b64(torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(0)))
    r = client.post("/v1/defend/flow", json={"method": "detect", "inputs": [noise]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["flagged"] == [True] and body["scores"][0] > body["threshold"]
    clean = client.post("/v1/defend/flow", json={"method": "detect", "indices": list(range(40))}).json()
    assert sum(clean["flagged"]) <= 8 and clean["threshold"] == body["threshold"]
    r = client.post("/v1/defend/vae", json={"method": "purify", "indices": list(range(8))})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["purified"]) == len(body["predictions_after"]) == len(body["predictions_before"]) == 8
    assert all(decoded(p).size == (8, 8) for p in body["purified"]) and set(body["predictions_after"]) <= set(range(10))
    # (How much purification keeps of the accuracy is measured on trained models: test_generative_defenses.)


BAD_DEFEND = [
    ("no defense for classifiers", "classifier", {"method": "detect", "indices": [0]}, 404, None),
    ("unknown defense", "vae", {"method": "magic", "indices": [0]}, 422, "method"),
    ("neither", "flow", {"method": "detect"}, 422, "inputs"),
    ("index out of range", "flow", {"method": "detect", "indices": [100000]}, 422, "indices"),
    ("not an image", "flow", {"method": "detect", "inputs": ["bm90IGFuIGltYWdl"]}, 422, "inputs"),
    ("a classifier on a detector", "flow", {"method": "detect", "indices": [0], "classifier": "c"}, 422, "classifier"),
]


@pytest.mark.parametrize("case,model,body,status,field", BAD_DEFEND, ids=[b[0] for b in BAD_DEFEND])
def test_bad_defense_input_gets_a_clear_4xx(client, case, model, body, status, field):
    assert_clear_4xx(client.post(f"/v1/defend/{model}", json=body), status, field)
