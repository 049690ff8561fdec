"""/v1/inpaint: the seen pixels kept and the hole filled by the VAE and the flow, bad fields, metrics."""
import base64
import io

import numpy as np
from PIL import Image

from .helpers import counts_moved, metric_samples, png_of_array


def test_inpaint_keeps_the_seen_pixels_and_names_bad_fields(client, keys):
    from genray.client import Client

    before = metric_samples(client.get("/metrics").text)
    image = np.zeros((8, 8), dtype=np.uint8)
    image[1:7, 3] = 200  # a stroke, like the digits' 1
    drawn = np.zeros((8, 8), dtype=np.uint8)
    drawn[2:6, 1:5] = 255  # white: missing
    for model, extra in (("vae", {}), ("flow", {"method": "langevin"})):
        body = {"inputs": [png_of_array(image)], "mask": png_of_array(drawn), "n": 2, "steps": 10, "seed": 3, **extra}
        r = client.post(f"/v1/inpaint/{model}", json=body)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model"] == model and body["method"] == extra.get("method", "latent") and body["psnr"] is None
        outs = [np.array(Image.open(io.BytesIO(base64.b64decode(s)))) for s in body["images"]]
        assert len(outs) == 2 and all(o.shape == (8, 8) for o in outs)
        for o in outs:  # the seen pixels come back exactly; the hole is filled in
            assert (o[drawn == 0] == image[drawn == 0]).all()
        assert (np.array(Image.open(io.BytesIO(base64.b64decode(body["mask"])))) > 127).sum() == 16
    with Client(str(client.base_url), api_key=keys["generate"], timeout=120) as c:
        scored = c.inpaint("vae", indices=[2], mask="bottom", steps=10)
    assert len(scored.images) == 1 and scored.images[0].size == (8, 8) and 0 < scored.psnr[0] <= 100

    small = np.full((5, 5), 255, dtype=np.uint8)
    bads = (("vae", {"indices": [0], "mask": png_of_array(small)}, "mask"), ("vae", {}, "inputs"),
            ("vae", {"indices": [0], "method": "map"}, "method"), ("flow", {"indices": [0], "label": 1}, "label"),
            ("vae", {"inputs": ["not base64!"]}, "inputs"), ("vae", {"indices": [0], "mask": "circle"}, "mask"),
            ("vae", {"indices": [0], "steps": 5000}, "steps"), ("vae", {"indices": [10**6]}, "indices"),
            ("flow", {"inputs": [png_of_array(small)]}, "inputs"),
            ("vae", {"indices": [0], "fraction": 0.2}, "fraction"), ("vae", {"indices": [0, 1, 2], "n": 6}, "n"))
    for model, bad, field in bads:
        r = client.post(f"/v1/inpaint/{model}", json=bad)
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["detail"][0]["loc"][:2] == ["body", field], (bad, r.text)
    assert client.post("/v1/inpaint/markov", json={"indices": [0]}).status_code == 404
    after = metric_samples(client.get("/metrics").text)
    delta = counts_moved(before, after)
    assert delta("genray_inpaint_requests_total", model="vae", method="latent", status="200") == 2
    assert delta("genray_inpaint_requests_total", model="flow", method="langevin", status="200") == 1
    assert delta("genray_inpaint_requests_total", model="vae", method="latent", status="422") == 7
    assert delta("genray_inpaint_requests_total", model="vae", method="_invalid", status="422") == 2
    assert delta("genray_inpaint_latency_seconds_count", model="vae") == 11
    assert "/v1/inpaint/{model}" in client.get("/openapi.json").json()["paths"]
