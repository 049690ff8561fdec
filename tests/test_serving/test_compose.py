"""/v1/compose: a checked four-part chorale, a harmonised melody, bad fields and metrics."""
import base64

from .helpers import counts_moved, metric_samples


def test_compose_answers_a_checked_chorale_and_harmonises_a_melody(client):
    before = metric_samples(client.get("/metrics").text)
    r = client.post("/v1/compose", json={"key": "e", "bars": 4, "seed": 3, "wav": True})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["key"] == "E minor" and list(body["voices"]) == ["Soprano", "Alto", "Tenor", "Bass"]
    assert len({len(v) for v in body["voices"].values()}) == 1 and len(body["chords"]) == len(body["voices"]["Bass"])
    checked = body["analysis"]
    assert (checked["parallel_fifths"], checked["parallel_octaves"], checked["range_violations"],
            checked["crossings"], checked["key_agrees"]) == (0, 0, 0, 0, True)
    assert base64.b64decode(body["midi"])[:4] == b"MThd" and base64.b64decode(body["wav"])[:4] == b"RIFF"
    again = client.post("/v1/compose", json={"key": "e", "bars": 4, "seed": 3}).json()
    assert again["voices"] == body["voices"] and again["wav"] is None
    melody = ["G4/1", "G4/1", "D5/1", "R/0.5", "B4/0.5", "A4/1.5", "F#4/0.25", "G4/2"]
    harmonised = client.post("/v1/compose", json={"key": "G", "melody": " ".join(melody)}).json()
    assert harmonised["voices"]["Soprano"] == melody and harmonised["analysis"]["parallel_fifths"] == 0
    for bad, field in (({"key": "H"}, "key"), ({"bars": 0}, "bars"), ({"key": "G", "melody": "G4/1 X9/1"}, "melody"),
                       ({"tempo": 90}, "tempo")):
        r = client.post("/v1/compose", json=bad)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"][:2] == ["body", field], (bad, r.text)
    after = metric_samples(client.get("/metrics").text)
    delta = counts_moved(before, after)
    assert delta("genray_compose_requests_total", model="theory", method="compose", status="200") == 2
    assert delta("genray_compose_requests_total", method="harmonise", status="200") == 1
    assert delta("genray_compose_requests_total", status="422") == 4
    assert delta("genray_compose_latency_seconds_count") == 7
    assert "/v1/compose" in client.get("/openapi.json").json()["paths"]
