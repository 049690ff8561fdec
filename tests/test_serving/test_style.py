"""/v1/style: style transfer by optimisation and by a style network, bad fields, metrics."""
import base64
import io

import numpy as np
from PIL import Image

from .helpers import counts_moved, metric_samples, png_of_array


def test_style_transfer_answers_a_png_with_its_scores_and_names_bad_fields(client):
    before = metric_samples(client.get("/metrics").text)
    content = np.zeros((24, 40, 3), dtype=np.uint8)
    content[6:18, 10:30] = (200, 180, 40)  # a yellow box on black
    r = client.post("/v1/style", json={"content": png_of_array(content), "style": "brick", "steps": 20, "max_side": 32,
                                       "strength": 0.9})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "random-features" and body["version"] is None
    assert Image.open(io.BytesIO(base64.b64decode(body["image"]))).size == (32, 19)
    assert body["summary"]["style_distance_after"] < body["summary"]["style_distance_before"]
    assert 0 < body["summary"]["content_ssim"] < 1
    named = client.post("/v1/style", json={"content": "chelsea", "style": "gravel", "steps": 2, "max_side": 16})
    assert named.status_code == 200, named.text
    for bad, field in (({"content": "lena", "style": "brick"}, "content"),
                       ({"content": "chelsea", "style": "x" * 80}, "style"),
                       ({"content": "chelsea", "style": "brick", "loss": "vgg"}, "loss"),
                       ({"content": "chelsea", "style": "brick", "steps": 0}, "steps"),
                       ({"content": "chelsea"}, "style"),
                       ({"content": "chelsea", "style": "brick", "model": "brick-net"}, "style"),
                       ({"content": "chelsea", "model": "brick-net", "steps": 5}, "steps"),
                       ({"content": "chelsea", "style": "brick", "colour": "red"}, "colour")):
        r = client.post("/v1/style", json=bad)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"][:2] == ["body", field], (bad, r.text)
    assert client.post("/v1/style", json={"content": "chelsea", "model": "vae"}).status_code == 404
    # A style network: one pass, its own style, scored the same way.
    r = client.post("/v1/style", json={"content": png_of_array(content), "model": "brick-net", "max_side": 32})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "brick-net" and body["version"] >= 1
    assert Image.open(io.BytesIO(base64.b64decode(body["image"]))).size == (32, 19)
    assert body["summary"]["style_distance_before"] > 0 and 0 < body["summary"]["content_ssim"] <= 1
    delta = counts_moved(before, metric_samples(client.get("/metrics").text))
    assert delta("genray_style_requests_total", model="random-features", method="optimise", status="200") == 2
    assert delta("genray_style_requests_total", model="brick-net", method="network", status="200") == 1
    assert delta("genray_style_requests_total", status="422") == 8
    assert delta("genray_style_requests_total", status="404") == 1
    assert delta("genray_style_latency_seconds_count") == 12
    assert "/v1/style" in client.get("/openapi.json").json()["paths"]
