"""/v1/summarize: extractive methods and registry models, the abstractor, bad fields, metrics."""
from .helpers import counts_moved, metric_samples

PAPER = ["Parsing is hard because natural language is ambiguous.", "Prior parsers fail on long sentences.",
         "We propose a chart parser with learned pruning.", "Our parser scores each span with a small network.",
         "Experiments show that it improves accuracy by 2 points.", "We thank the reviewers."]


def test_summarize_by_methods_and_registry_models_and_names_bad_fields(client, keys):
    from genray.client import Client

    before = metric_samples(client.get("/metrics").text)
    r = client.post("/v1/summarize/lead", json={"text": " ".join(PAPER), "aspect": "approach", "max_sentences": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["sentences"] == [0, 1] and body["summary"] == " ".join(PAPER[:2]) and body["version"] is None
    for model in ("textrank", "lexrank", "summarizer"):
        body = client.post(f"/v1/summarize/{model}", json={"sentences": PAPER, "aspect": "outcome"}).json()
        assert len(body["sentences"]) == 3 and body["summary"] == " ".join(PAPER[i] for i in body["sentences"])
    assert body["model"] == "summarizer" and body["version"] >= 1
    short = client.post("/v1/summarize/summarizer", json={"sentences": PAPER, "max_tokens": 12}).json()
    assert sum(len(PAPER[i].split()) for i in short["sentences"]) <= 12 or len(short["sentences"]) == 1
    written = client.post("/v1/summarize/abstractor", json={"text": " ".join(PAPER), "max_tokens": 10}).json()
    assert written["sentences"] is None and 0 < len(written["summary"].split()) <= 10
    assert len(written["source"]) == 5 and written["source"] == sorted(written["source"])  # the summarizer's best 5
    with Client(str(client.base_url), api_key=keys["generate"], timeout=120) as c:
        picks = [c.summarize("random", PAPER, aspect="outcome", seed=3, max_sentences=2).sentences for _ in range(2)]
    assert picks[0] == picks[1] and len(picks[0]) == 2

    for model, bad, field in (("lead", {"text": "A b.", "sentences": ["A b."]}, "text"), ("lead", {}, "text"),
                              ("lead", {"text": "A b.", "aspect": "method"}, "aspect"),
                              ("lead", {"text": "A b.", "max_sentences": 2, "max_tokens": 5}, "max_sentences"),
                              ("abstractor", {"text": "A b.", "max_sentences": 2}, "max_sentences"),
                              ("lead", {"text": "A b.", "seed": 3}, "seed"),
                              ("lead", {"text": "A b.", "max_sentences": 0}, "max_sentences"),
                              ("lead", {"sentences": []}, "sentences"), ("lead", {"text": "   "}, "text"),
                              ("lead", {"text": "A b.", "style": "brick"}, "style")):
        r = client.post(f"/v1/summarize/{model}", json=bad)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"][:2] == ["body", field], (bad, r.text)
    assert client.post("/v1/summarize/vae", json={"text": "A b."}).status_code == 404
    delta = counts_moved(before, metric_samples(client.get("/metrics").text))
    assert delta("genray_summarize_requests_total", model="lead", method="approach", status="200") == 1
    assert delta("genray_summarize_requests_total", model="summarizer", method="challenge", status="200") == 1
    assert delta("genray_summarize_requests_total", model="random", method="outcome", status="200") == 2
    # The aspect is the method label: unparsed or bad, it is "_invalid".
    assert delta("genray_summarize_requests_total", model="lead", method="_invalid", status="422") == 4
    assert delta("genray_summarize_latency_seconds_count", model="lead") == 10
    assert "/v1/summarize/{model}" in client.get("/openapi.json").json()["paths"]
