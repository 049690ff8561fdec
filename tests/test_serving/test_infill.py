"""POST /v1/infill/{model}: a text model fills the gap in a text, best first, through the same
route, checks and metrics as every capability; bad input names its field."""
from genray.client import Client

from .helpers import counts_moved, metric_samples


def test_infill_ranks_fills_of_the_gap_and_names_bad_fields(client, keys):
    before = metric_samples(client.get("/metrics").text)
    asked = {"text": "ROMEO: What ____ thou", "candidates": 8, "seed": 1}
    r = client.post("/v1/infill/markov", json=asked)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "markov" and body["version"] >= 1
    scores = [f["log_prob"] for f in body["fills"]]
    assert 1 <= len(scores) <= 5 and scores == sorted(scores, reverse=True)
    assert all(len(f["fill"]) == 4 and f["text"] == f"ROMEO: What {f['fill']} thou" for f in body["fills"])
    assert client.post("/v1/infill/markov", json=asked).json() == body  # same seed, same fills
    with Client(str(client.base_url), api_key=keys["generate"], timeout=120) as c:
        best = c.infill("transformer", "ROMEO: What ____ thou", candidates=4, top=2, seed=2).fills
    assert 1 <= len(best) <= 2 and best[0].text.startswith("ROMEO: What ") and best[0].log_prob < 0

    for bad, field in (({"text": "no gap here"}, "text"), ({"text": "a __ b __"}, "text"),
                       ({"text": "A __", "candidates": 0}, "candidates"), ({"text": "A __ \u2603"}, "text"),
                       ({"text": "A __", "length": 999}, "length"), ({"text": "A __", "colour": 1}, "colour")):
        r = client.post("/v1/infill/markov", json=bad)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"][:2] == ["body", field], (bad, r.text)
    assert client.post("/v1/infill/vae", json={"text": "A __"}).status_code == 404  # not a text model
    delta = counts_moved(before, metric_samples(client.get("/metrics").text))
    assert delta("genray_infill_requests_total", model="markov", status="200") == 2
    assert delta("genray_infill_requests_total", model="markov", status="422") == 6
    assert delta("genray_infill_latency_seconds_count", model="markov") == 8
    assert "/v1/infill/{model}" in client.get("/openapi.json").json()["paths"]
