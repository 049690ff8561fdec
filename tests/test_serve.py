"""Ray Serve over real HTTP: generation, validation, metrics, determinism, overload."""
import base64
import io
import json
import socket
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import ray
import torch
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from genray.cli import main as cli


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def keys(storage):
    """API keys in the storage's key file: every scope, generate alone, and a rate-limited one."""
    from genray.services import auth

    path = storage.path(auth.KEYS_FILE)
    return {"admin": auth.add_key(path, "test-admin", list(auth.SCOPES)),
            "generate": auth.add_key(path, "test-generate", ["generate"]),
            "slow": auth.add_key(path, "test-slow", ["generate"], rate_per_s=0.5, burst=2)}


@pytest.fixture(scope="module")
def client(trained, storage, keys):
    from ray import serve

    from genray.services.app import deploy, undeploy

    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    deploy(storage.uri)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120,
                      headers={"Authorization": f"Bearer {keys['admin']}"}) as c:
        yield c
    undeploy("genray")


def _samples(text: str) -> dict:
    """Prometheus exposition text parsed by prometheus_client: {(sample name, labels): value},
    and the metric families' types under ("TYPE", family name)."""
    out = {}
    for family in text_string_to_metric_families(text):
        out[("TYPE", family.name)] = family.type
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _scrape_until(client, ready, timeout_s: float = 10.0) -> dict:
    """/metrics parsed, once ready(samples) holds: the model replicas push theirs every second."""
    import time

    deadline = time.time() + timeout_s
    while True:
        samples = _samples(client.get("/metrics").text)
        if ready(samples) or time.time() > deadline:
            return samples
        time.sleep(0.25)


def _settled(client, timeout_s: float = 10.0) -> dict:
    """/metrics parsed once the model replicas' pushes have caught up with earlier traffic:
    two scrapes a push interval apart agree."""
    import time

    deadline = time.time() + timeout_s
    samples = _samples(client.get("/metrics").text)
    while time.time() < deadline:
        time.sleep(1.5)  # longer than one push interval (METRICS_PUSH_S)
        again = _samples(client.get("/metrics").text)
        if again == samples:
            break
        samples = again
    return samples


def _total(samples: dict, name: str, **labels) -> float:
    """The sum of sample `name` over the series whose labels include `labels`."""
    return sum(v for (n, series), v in samples.items() if n == name and set(labels.items()) <= set(series))


def _delta(before: dict, after: dict):
    """(sample name, **labels) -> how much those samples moved between two scrapes."""
    def delta(name, **labels):
        return _total(after, name, **labels) - _total(before, name, **labels)
    return delta


def test_health_and_model_list(client):
    models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert client.get("/healthz").json() == {"status": "ok", "models": len(models)}
    generative = {n for n, m in models.items() if m["kind"] == "generative"}
    assert generative == {"ar", "chorale", "chorale-gan", "flow", "gan", "markov", "rnn", "transformer", "vae"}
    assert models["chorale"]["modality"] == "music" and models["ar"]["modality"] == "series"
    assert models["vae"]["modality"] == "image" and models["markov"]["family"] == "markov"
    # Classifiers are served for attacks and explanations; generative models where an attack or defense applies.
    assert models["classifier"]["kind"] == "classifier" and models["classifier"]["endpoints"] == ["attack", "explain"]
    assert models["vae"]["endpoints"] == ["generate", "attack", "defend", "explain", "inpaint"]
    assert models["flow"]["endpoints"] == ["generate", "defend", "explain", "inpaint"]
    assert models["markov"]["endpoints"] == ["generate", "explain"]
    assert models["transformer"]["endpoints"] == ["generate", "attack", "explain"]
    assert models["summarizer"]["kind"] == "summarizer" and models["abstractor"]["endpoints"] == ["summarize"]
    assert models["brick-net"]["kind"] == "stylizer" and models["brick-net"]["endpoints"] == ["style"]
    assert models["transformer"]["metrics"]["nll_unit"] == "nats/char"
    assert "val_nll" in models["vae"]["metrics"] and "history" not in models["vae"]["metrics"]


@pytest.mark.parametrize("model,body", [("gan", {"label": 4}), ("vae", {"label": 4}), ("flow", {"temperature": 0.7})])
def test_image_models_generate_pngs(client, model, body):
    r = client.post(f"/v1/generate/{model}", json={"n": 3, "seed": 9, **body})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == model and body["version"] >= 1 and len(body["samples"]) == 3
    for s in body["samples"]:
        assert Image.open(io.BytesIO(base64.b64decode(s))).size == (8, 8)


@pytest.mark.parametrize("model", ["markov", "rnn", "transformer"])
def test_text_models_continue_the_prompt(client, model):
    r = client.post(f"/v1/generate/{model}", json={"n": 2, "prompt": "KING", "max_tokens": 30,
                                                   "temperature": 0.8, "seed": 5})
    assert r.status_code == 200, r.text
    samples = r.json()["samples"]
    assert len(samples) == 2 and all(s.startswith("KING") and len(s) == 34 for s in samples)


def test_music_model_returns_midi_and_wav(client):
    from genray.models.codecs import music

    r = client.post("/v1/generate/chorale", json={"n": 2, "prompt": "G4/1 A4/1", "max_tokens": 24, "seed": 2,
                                                  "wav": True})
    assert r.status_code == 200, r.text
    for s in r.json()["samples"]:
        events = s["events"].split()
        assert events[:2] == ["G4/1", "A4/1"] and 2 <= len(events) <= 26 and "|" not in events
        assert music.from_midi(base64.b64decode(s["midi"])) == music.trim(events)  # the MIDI holds these notes
        assert base64.b64decode(s["wav"])[:4] == b"RIFF"
    plain = client.post("/v1/generate/chorale", json={"max_tokens": 8, "seed": 2}).json()["samples"][0]
    assert "wav" not in plain and "midi" in plain
    # The music GAN answers the same way: four bars of piano roll read back as events.
    r = client.post("/v1/generate/chorale-gan", json={"n": 2, "seed": 5, "wav": True})
    assert r.status_code == 200, r.text
    for s in r.json()["samples"]:
        events = s["events"].split()
        assert sum(float(e.split("/")[1]) for e in events) == pytest.approx(16, abs=3)
        assert music.from_midi(base64.b64decode(s["midi"])) == music.trim(events)
        assert base64.b64decode(s["wav"])[:4] == b"RIFF"
    assert client.post("/v1/generate/chorale-gan", json={"prompt": "G4/1"}).status_code == 422


def test_series_model_continues_a_history(client):
    history = [5.0, 20.0, 60.0, 110.0, 140.0, 120.0, 80.0, 40.0, 15.0, 8.0]
    r = client.post("/v1/generate/ar", json={"n": 3, "prompt": history, "max_tokens": 7, "seed": 4})
    assert r.status_code == 200, r.text
    paths = r.json()["samples"]
    assert len(paths) == 3 and all(len(p) == 7 and all(isinstance(v, float) for v in p) for p in paths)
    assert len({tuple(p) for p in paths}) == 3  # noise: three different paths
    cold = client.post("/v1/generate/ar", json={"max_tokens": 5, "seed": 4}).json()["samples"][0]
    assert len(cold) == 5
    short = client.post("/v1/generate/ar", json={"prompt": [1.0, 2.0]})
    assert short.status_code == 422 and "at least" in short.text


def test_same_seed_same_samples_over_http_and_cli(client, storage, capsys):
    body = {"n": 2, "prompt": "ROMEO:", "max_tokens": 40, "seed": 123}
    a = client.post("/v1/generate/transformer", json=body).json()["samples"]
    b = client.post("/v1/generate/transformer", json=body).json()["samples"]
    assert a == b
    assert client.post("/v1/generate/transformer", json={**body, "seed": 124}).json()["samples"] != a
    assert cli(["sample", "transformer", "-n", "2", "--prompt", "ROMEO:", "--max-tokens", "40", "--seed", "123",
                "--storage", storage.uri]) == 0
    assert capsys.readouterr().out == "\n\n".join(a) + "\n"


BAD = [
    ("malformed json", "vae", b'{"n": 2', 422, None),
    ("wrong type", "vae", {"n": "two"}, 422, "n"),
    ("bool for int", "vae", {"n": True}, 422, "n"),
    ("n too large", "vae", {"n": 65}, 422, "n"),
    ("n zero", "vae", {"n": 0}, 422, "n"),
    ("temperature zero", "markov", {"temperature": 0}, 422, "temperature"),
    ("max_tokens too large", "transformer", {"max_tokens": 5000}, 422, "max_tokens"),
    ("unknown field", "vae", {"colour": "red"}, 422, "colour"),
    ("text field on image model", "vae", {"prompt": "hi"}, 422, "prompt"),
    ("image field on text model", "markov", {"label": 3}, 422, "label"),
    ("top_k on the ar model", "ar", {"top_k": 3}, 422, "top_k"),
    ("top_p above 1", "transformer", {"top_p": 1.5}, 422, "top_p"),
    ("too many stop strings", "transformer", {"stop": ["a", "b", "c", "d", "e"]}, 422, "stop"),
    ("empty stop string", "rnn", {"stop": [""]}, 422, "stop"),
    ("stop on music", "chorale", {"stop": ["G4/1"]}, 422, "stop"),
    ("stream on an image model", "vae", {"stream": True}, 422, "stream"),
    ("stream of several samples", "transformer", {"stream": True, "n": 2}, 422, "stream"),
    ("wav for more than 4 samples", "chorale", {"wav": True, "n": 5}, 422, "wav"),
    ("label out of range", "vae", {"label": 10}, 422, "label"),
    ("label on an unconditional flow", "flow", {"label": 1}, 422, "label"),
    ("prompt outside vocabulary", "transformer", {"prompt": "\u2603"}, 422, "prompt"),
    ("numbers to a text model", "markov", {"prompt": [1, 2, 3]}, 422, "prompt"),
    ("text to a series model", "ar", {"prompt": "1 2 3"}, 422, "prompt"),
    ("string in a series", "ar", {"prompt": [1, "2"]}, 422, "prompt"),
    ("event outside vocabulary", "chorale", {"prompt": "G4/1 H9/1"}, 422, "prompt"),
    ("wav on a text model", "rnn", {"wav": True}, 422, "wav"),
    ("unknown model", "nope", {}, 404, None),
]


@pytest.mark.parametrize("case,model,body,status,field", BAD, ids=[b[0] for b in BAD])
def test_bad_input_gets_a_clear_4xx(client, case, model, body, status, field):
    raw = isinstance(body, bytes)
    kw = {"content": body, "headers": {"content-type": "application/json"}} if raw else {"json": body}
    r = client.post(f"/v1/generate/{model}", **kw)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    if field:
        assert any(field in e["loc"] for e in detail), detail
    elif status == 404:
        assert "unknown model" in detail


def _events(response) -> list:
    assert response.headers["content-type"].startswith("text/event-stream")
    lines = [line[len("data: "):] for line in response.text.split("\n\n") if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def test_text_streams_as_server_sent_events_with_stop_and_top_p(client):
    body = {"prompt": "ROMEO:", "max_tokens": 300, "seed": 8, "top_p": 0.9}
    whole = client.post("/v1/generate/transformer", json=body).json()["samples"][0]
    stop = whole[len("ROMEO:") + 20: len("ROMEO:") + 22]  # two characters the sample reaches
    cut = whole.index(stop, len("ROMEO:"))
    stopped = client.post("/v1/generate/transformer", json={**body, "stop": [stop]}).json()["samples"][0]
    assert stopped == whole[:cut]
    events = _events(client.post("/v1/generate/transformer", json={**body, "stop": [stop], "stream": True}))
    pieces, last = events[:-1], events[-1]
    assert len(pieces) >= 1 and all(set(e) == {"text"} for e in pieces)
    assert "ROMEO:" + "".join(e["text"] for e in pieces) == stopped == last["sample"] and last["done"]
    music = _events(client.post("/v1/generate/chorale", json={"prompt": "G4/1", "max_tokens": 16, "seed": 1,
                                                              "stream": True}))
    again = client.post("/v1/generate/chorale", json={"prompt": "G4/1", "max_tokens": 16, "seed": 1}).json()
    assert " ".join(["G4/1"] + [e["events"] for e in music[:-1]]) == again["samples"][0]["events"]
    assert music[-1]["sample"] == again["samples"][0]


def test_keys_scopes_rate_limits_and_body_size(client, keys, storage):
    url = "/v1/generate/markov"
    bare = {"authorization": ""}
    assert client.post(url, json={}, headers=bare).status_code == 401
    r = client.post(url, json={}, headers={"authorization": "Bearer gr-not-a-key"})
    assert r.status_code == 401 and r.json()["detail"] == "unknown API key"
    assert r.headers["www-authenticate"] == "Bearer"
    assert client.get("/v1/models", headers=bare).status_code == 401
    assert client.get("/healthz", headers=bare).status_code == 200  # liveness needs no key
    gen = {"authorization": f"Bearer {keys['generate']}"}
    assert client.post(url, json={"max_tokens": 5}, headers={"x-api-key": keys["generate"]}).status_code == 200
    r = client.post("/v1/attack/classifier", json={"method": "fgsm", "indices": [0]}, headers=gen)
    assert r.status_code == 403 and "'attack'" in r.json()["detail"]
    assert client.post("/v1/explain/classifier", json={"method": "ig", "indices": [0]}, headers=gen).status_code == 403
    assert client.get("/metrics", headers=gen).status_code == 403

    slow = {"authorization": f"Bearer {keys['slow']}"}
    codes = [client.post(url, json={"max_tokens": 2}, headers=slow) for _ in range(3)]
    assert [c.status_code for c in codes] == [200, 200, 429]  # a burst of 2, then 0.5 a second
    assert 1 <= int(codes[2].headers["retry-after"]) <= 2

    big = b'{"prompt": "' + b"a" * (9 << 20) + b'"}'
    r = client.post(url, content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "bytes" in r.json()["detail"]

    def chunks():  # no Content-Length: refused as the body arrives
        for _ in range(10):
            yield b" " * (1 << 20)
    assert client.post(url, content=chunks(), headers={"content-type": "application/json"}).status_code == 413

    requests = "genray_generate_requests_total"
    after = _scrape_until(client, lambda m: _total(m, requests, model="markov", status="413") >= 2)
    assert _total(after, requests, model="markov", status="401") >= 2
    assert _total(after, requests, model="markov", status="429") >= 1
    assert _total(after, requests, model="markov", status="413") >= 2


def test_every_status_is_declared_with_its_error_body(client):
    doc = client.get("/openapi.json").json()
    assert "ErrorBody" in doc["components"]["schemas"]
    for path in ("/v1/generate/{model}", "/v1/attack/{model}", "/v1/defend/{model}", "/v1/explain/{model}"):
        op = doc["paths"][path]["post"]
        assert {"200", "401", "403", "404", "413", "422", "429", "500", "503", "504"} <= set(op["responses"]), path
        assert op["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
        assert op["requestBody"]["content"]["application/json"]["schema"]
    assert "Retry-After" in doc["paths"]["/v1/generate/{model}"]["post"]["responses"]["429"]["headers"]
    assert {"401", "403", "429"} <= set(doc["paths"]["/metrics"]["get"]["responses"])


def test_metrics_move_with_traffic(client):
    before = _settled(client)  # the tests before this one may still be on their way to the board
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda i: client.post("/v1/generate/vae", json={"n": 2, "seed": i}).status_code,
                              range(16)))
    assert codes == [200] * 16
    client.post("/v1/generate/vae", json={"n": 999})
    r = client.get("/metrics")
    assert r.headers["content-type"].startswith("text/plain; version=")  # the Prometheus text format
    # Every replica's counts, merged at the gateway (a model replica pushes its own every second).
    after = _scrape_until(client, lambda m: _delta(before, m)("genray_generate_latency_seconds_count",
                                                              model="vae") >= 17)
    assert after[("TYPE", "genray_generate_requests")] == "counter"
    assert after[("TYPE", "genray_samples_generated")] == "counter"
    assert after[("TYPE", "genray_generate_latency_seconds")] == "histogram"
    assert after[("TYPE", "genray_batch_size")] == "histogram"

    delta = _delta(before, after)
    assert delta("genray_generate_requests_total", model="vae", method="json", status="200") == 16
    assert delta("genray_generate_requests_total", model="vae", status="422") == 1
    assert delta("genray_samples_generated_total", model="vae") == 32
    assert delta("genray_generate_latency_seconds_count", model="vae") == 17
    assert delta("genray_generate_latency_seconds_bucket", model="vae", le="+Inf") == 17
    batches = delta("genray_batch_size_count", model="vae")
    assert 1 <= batches <= 16 and delta("genray_batch_size_sum", model="vae") == 32


def test_one_bad_request_does_not_fail_its_batch(client):
    """A prompt shorter than the AR model's fitted order, among 23 good concurrent requests:
    only its caller gets a 422, with the model's own message and no server internals."""
    history = [5.0, 20.0, 60.0, 110.0, 140.0, 120.0, 80.0, 40.0, 15.0, 8.0]
    bodies = [{"prompt": history, "max_tokens": 40, "seed": i} for i in range(24)]
    bodies[7] = {"prompt": [1.0, 2.0], "max_tokens": 40}
    for _attempt in range(3):  # batching is timing-dependent: try a few times
        with ThreadPoolExecutor(24) as pool:
            responses = list(pool.map(lambda b: client.post("/v1/generate/ar", json=b), bodies))
        codes = [r.status_code for r in responses]
        assert codes == [200] * 7 + [422] + [200] * 16, codes
    detail = responses[7].json()["detail"]
    assert detail[0]["loc"] == ["body", "prompt"] and "at least" in detail[0]["msg"]
    text = responses[7].text
    assert "\x1b" not in text and "\\u001b" not in text  # no ANSI colour codes
    for internal in ("pid=", "ip=", "Ray", "actor", "Traceback", "ray::"):
        assert internal not in text, text


def test_overload_answers_503_not_a_hang(client, storage):

    from genray.services.app import ServeOptions, deploy, undeploy

    # A second app on the same HTTP proxy whose model server takes one request and queues one.
    tight = ServeOptions(max_replicas=1, max_ongoing_requests=1, max_queued_requests=1, max_batch_size=1,
                         extras=())
    deploy(storage.uri, ["transformer"], tight, name="tight", route_prefix="/tight")
    slow = {"max_tokens": 1500, "prompt": "A"}
    try:
        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(lambda _: client.post("/tight/v1/generate/transformer", json=slow).status_code,
                                  range(8)))
    finally:
        undeploy("tight")
    assert 503 in codes and 200 in codes and set(codes) <= {200, 503}, codes


def test_a_new_version_is_served_without_dropping_requests(client, storage, tmp_path):
    """An app over its own storage: version 1 (a Markov chain) serves while slow requests run,
    version 2 (an RNN under the same name) is published and POST /v1/admin/reload swaps it in;
    every request succeeds, the new version answers from then on, and version 1 stays reachable
    by pin."""

    from genray.cluster.registry import Registry
    from genray.cluster.storage import Storage
    from genray.services import auth
    from genray.services.app import ServeOptions, deploy, undeploy

    trained, own = Registry(storage), Registry(Storage(str(tmp_path)))
    own.publish("hot", trained.load("markov")[0], {})
    admin = auth.add_key(own.storage.path(auth.KEYS_FILE), "admin", ["admin"])
    generate_only = auth.add_key(own.storage.path(auth.KEYS_FILE), "gen", ["generate"])
    deploy(own.storage.uri, ["hot"], ServeOptions(max_replicas=1, watch_s=0, extras=()), name="hot",
           route_prefix="/hot")
    headers = {"authorization": f"Bearer {admin}"}
    body = {"prompt": "KING", "max_tokens": 30, "seed": 3}
    try:
        v1 = client.post("/hot/v1/generate/hot", json=body, headers=headers).json()
        assert v1["version"] == 1
        slow = {"prompt": "A", "max_tokens": 1500, "seed": 1}
        with ThreadPoolExecutor(6) as pool:
            running = [pool.submit(client.post, "/hot/v1/generate/hot", json=slow, headers=headers)
                       for _ in range(6)]
            own.publish("hot", trained.load("rnn")[0], {})
            assert client.post("/hot/v1/admin/reload", headers={"authorization": f"Bearer {generate_only}"}
                               ).status_code == 403
            r = client.post("/hot/v1/admin/reload", headers=headers)
            assert r.status_code == 200 and r.json() == {"models": {"hot": 2}}
            after = client.post("/hot/v1/generate/hot", json=body, headers=headers).json()
            done = [f.result() for f in running]
        assert [d.status_code for d in done] == [200] * 6
        assert {d.json()["version"] for d in done} <= {1, 2}
        assert after["version"] == 2 and after["samples"] != v1["samples"]
        listed = client.get("/hot/v1/models", headers=headers).json()["models"]
        assert [(m["name"], m["version"], m["family"]) for m in listed] == [("hot", 2, "rnn")]
        pinned = client.post("/hot/v1/generate/hot@1", json=body, headers=headers).json()
        assert pinned == v1
        assert client.post("/hot/v1/generate/hot", json={**body, "version": 1}, headers=headers).json() == v1
        r = client.post("/hot/v1/generate/hot", json={**body, "version": 9}, headers=headers)
        assert r.status_code == 404 and "no version 9" in r.json()["detail"]
        assert client.post("/hot/v1/generate/hot@x", json=body, headers=headers).status_code == 404
    finally:
        undeploy("hot")


def test_models_still_training_are_listed_and_answered_503_until_they_join(client, storage, tmp_path):
    """What `genray up` serves before its defaults are trained: the app lists a pending model with
    the progress its training reports, answers it 503 with Retry-After at every endpoint, and serves
    it once it is published and the app redeployed."""
    import time

    from genray.cluster.progress import PROGRESS_BOARD, PROGRESS_NAMESPACE, ProgressBoard
    from genray.cluster.registry import Registry
    from genray.cluster.storage import Storage
    from genray.services.app import ServeOptions, deploy, undeploy
    from genray.services.spec import SPECS

    # With style transfer deployed: a style network still training is named in the body.
    own, options = Registry(Storage(str(tmp_path))), ServeOptions(max_replicas=1, auth=False, extras=("style",))
    board = ProgressBoard.options(name=PROGRESS_BOARD, namespace=PROGRESS_NAMESPACE).remote()
    board.update.remote("late", {"epoch": 2, "epochs": 5, "step": 20, "total": 50})
    deploy(own.storage.uri, None, options, pending={"late": {"family": "markov"}}, name="late", route_prefix="/late")
    try:
        deadline = time.time() + 15
        while time.time() < deadline:
            listed = client.get("/late/v1/models").json()["models"]
            if listed[0]["progress"]:
                break
            time.sleep(0.5)
        assert listed == [{"name": "late", "family": "markov", "status": "training", "endpoints": [],
                           "progress": {"epoch": 2, "epochs": 5, "step": 20, "total": 50}}]
        r = client.post("/late/v1/generate/late", json={"max_tokens": 5})
        assert r.status_code == 503 and r.headers["retry-after"] == "15"
        assert r.json()["detail"] == "model 'late' is still training (epoch 2/5); retry later"
        # Every capability with a model, in its path or in its body (style), answers the same.
        bodies = {"style": {"content": "chelsea"}}  # what the body needs besides the model
        asked = [(f"{spec.name}/late", {}) if spec.in_path else
                 (spec.name, {**bodies[spec.name], spec.body_model: "late"})
                 for spec in SPECS.values() if spec.in_path or spec.body_model]
        assert len(asked) >= 6
        for path, body in asked:
            r = client.post(f"/late/v1/{path}", json=body)
            assert r.status_code == 503 and r.headers["retry-after"] == "15", (path, r.text)
            assert "is still training" in r.json()["detail"], path
        own.publish("late", Registry(storage).load("markov")[0], {})
        deploy(own.storage.uri, None, options, pending={}, name="late", route_prefix="/late")
        r = client.post("/late/v1/generate/late", json={"max_tokens": 5, "seed": 1})
        assert r.status_code == 200 and r.json()["version"] == 1
        assert [m["status"] for m in client.get("/late/v1/models").json()["models"]] == ["ready"]
    finally:
        undeploy("late")
        ray.kill(board)


def test_a_timeout_answers_504_and_stops_the_abandoned_work(client, storage):
    import time

    from ray import serve

    from genray.services.app import ServeOptions, deploy, undeploy

    deploy(storage.uri, ["transformer"], ServeOptions(max_replicas=1, request_timeout_s=0.3, auth=False, extras=()),
           name="timeout", route_prefix="/timeout")
    try:
        t0 = time.perf_counter()
        r = client.post("/timeout/v1/generate/transformer", json={"n": 64, "prompt": "A", "max_tokens": 2048})
        assert r.status_code == 504 and "did not answer within" in r.json()["detail"]
        assert time.perf_counter() - t0 < 5
        replica = serve.get_deployment_handle("model-transformer", app_name="timeout-transformer")
        deadline = time.time() + 10
        while replica.stats.remote().result()["cancelled_batches"] < 1 and time.time() < deadline:
            time.sleep(0.1)
        assert replica.stats.remote().result()["cancelled_batches"] == 1  # stopped mid-decoding
        quick = client.post("/timeout/v1/generate/transformer", json={"max_tokens": 5})
        assert quick.status_code == 200 and len(quick.json()["samples"][0]) == 5
    finally:
        undeploy("timeout")


def test_the_playground_works_in_a_real_browser(client, keys):
    """Debian's headless Chromium, driven by Playwright: a person enters a key, generates images,
    text and music, attacks and explains a digit, and sees the metrics; the page fetches nothing
    but the server's own paths. GENRAY_SCREENSHOTS=DIR saves what it shows (docs/ has them)."""
    import os
    import shutil

    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium-headless-shell") or shutil.which("chromium")
    assert chromium, "no Chromium: `make test` installs Debian's chromium-headless-shell"
    base = str(client.base_url).rstrip("/")
    shots = os.environ.get("GENRAY_SCREENSHOTS")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        errors, foreign = [], []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("request", lambda r: None if r.url.startswith((base, "data:", "blob:")) else foreign.append(r.url))
        page.goto(base + "/")
        page.fill("#key", keys["admin"])
        page.click("#connect")
        page.wait_for_selector("#model option[value=vae]", state="attached")

        page.select_option("#model", "vae")
        page.fill("#label", "7")
        page.click("#generate")
        _shown(page, "document.querySelectorAll('#output img.sample').length === 8", "gen-status")
        assert page.evaluate("[...document.querySelectorAll('#output img.sample')].every(i => i.naturalWidth === 8)")
        if shots:
            page.screenshot(path=os.path.join(shots, "playground-generate.png"), full_page=True)

        page.select_option("#model", "transformer")
        page.fill("#n", "2")
        page.click("#generate")
        _shown(page, "document.querySelectorAll('#output pre.sample').length === 2", "gen-status")
        texts = page.locator("#output pre.sample").all_inner_texts()
        assert all(t.startswith("ROMEO:") and len(t) > 100 for t in texts), texts

        page.select_option("#model", "chorale")
        page.click("#generate")
        _shown(page, "document.querySelectorAll('#output audio').length === 2", "gen-status")
        assert page.locator("#output audio").first.get_attribute("src").startswith("data:audio/wav;base64,UklGR")

        page.select_option("#model", "classifier")
        page.click("#attack")
        _shown(page, "document.querySelectorAll('#attack-output .triple canvas').length === 3", "attack-status")
        page.click("#explain")
        _shown(page, "document.querySelectorAll('#explain-output img').length === 1", "explain-status")
        page.click("#refresh-metrics")
        page.wait_for_selector("#metrics table")
        assert "vae" in page.inner_text("#metrics table")
        if shots:
            page.screenshot(path=os.path.join(shots, "playground-attack-explain.png"), full_page=True)
        browser.close()
    assert not errors, errors
    assert not foreign, foreign


def _shown(page, condition: str, status: str) -> None:
    """Wait until the page shows what `condition` tests, failing with the page's own error line."""
    page.wait_for_function(f"({condition}) || document.getElementById('{status}').className === 'error'")
    assert page.evaluate(condition), page.inner_text(f"#{status}")


# ---- /v1/attack and /v1/defend ---------------------------------------------------------------
def _png(img) -> str:
    from genray.models.codecs.images import to_png

    return base64.b64encode(to_png(img)).decode()


def _image(s: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(s)))


def test_attack_a_classifier(client):
    r = client.post("/v1/attack/classifier", json={"method": "pgd", "eps": 0.3, "steps": 10,
                                                   "indices": list(range(16))})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "classifier" and body["method"] == "pgd" and len(body["adversarial"]) == 16
    assert all(_image(s).size == (8, 8) for s in body["adversarial"])
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


def test_defend_detects_noise_and_purifies(client):
    import torch

    noise = _png(torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(0)))
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
    assert all(_image(p).size == (8, 8) for p in body["purified"]) and set(body["predictions_after"]) <= set(range(10))
    # (How much purification keeps of the accuracy is measured on trained models: test_generative_defenses.)


BAD_ROBUST = [
    ("unknown model", "attack", "nope", {"method": "pgd", "eps": 0.1, "indices": [0]}, 404, None),
    ("no defense for classifiers", "defend", "classifier", {"method": "detect", "indices": [0]}, 404, None),
    ("method not for this model", "attack", "vae", {"method": "pgd", "eps": 0.1, "indices": [0]}, 422, "method"),
    ("unknown defense", "defend", "vae", {"method": "magic", "indices": [0]}, 422, "method"),
    ("eps too large", "attack", "classifier", {"method": "pgd", "eps": 2.0, "indices": [0]}, 422, "eps"),
    ("no eps", "attack", "classifier", {"method": "pgd", "indices": [0]}, 422, "eps"),
    ("bad norm", "attack", "classifier", {"method": "pgd", "eps": 0.1, "norm": "l0", "indices": [0]}, 422, "norm"),
    ("too many steps", "attack", "classifier", {"method": "pgd", "eps": 0.1, "steps": 501, "indices": [0]}, 422,
     "steps"),
    ("target out of range", "attack", "classifier", {"method": "pgd", "eps": 0.1, "targeted": True, "target": 10,
                                                     "indices": [0]}, 422, "target"),
    ("targeted without target", "attack", "classifier", {"method": "pgd", "eps": 0.1, "targeted": True,
                                                         "indices": [0]}, 422, "target"),
    ("inputs and indices", "attack", "classifier", {"method": "fgsm", "eps": 0.1, "indices": [0],
                                                    "inputs": ["AAAA"]}, 422, "inputs"),
    ("neither", "defend", "flow", {"method": "detect"}, 422, "inputs"),
    ("too many inputs", "attack", "classifier", {"method": "fgsm", "eps": 0.1, "indices": list(range(65))}, 422,
     "indices"),
    ("index out of range", "defend", "flow", {"method": "detect", "indices": [100000]}, 422, "indices"),
    ("not an image", "defend", "flow", {"method": "detect", "inputs": ["bm90IGFuIGltYWdl"]}, 422, "inputs"),
    ("not base64", "attack", "classifier", {"method": "fgsm", "eps": 0.1, "inputs": ["%%%"]}, 422, "inputs"),
    ("suffix without a prompt", "attack", "transformer", {"method": "suffix", "target_text": "the"}, 422, "prompt"),
    ("target text outside vocabulary", "attack", "transformer", {"method": "suffix", "prompt": "A",
                                                                 "target_text": "\u2603"}, 422, "target_text"),
    ("a field the method does not read", "attack", "classifier", {"method": "fgsm", "eps": 0.1, "indices": [0],
                                                                  "prompt": "A"}, 422, "prompt"),
    ("image fields on a text attack", "attack", "transformer", {"method": "suffix", "prompt": "A",
                                                                "target_text": "the", "eps": 0.1}, 422, "eps"),
    ("target without targeted", "attack", "classifier", {"method": "pgd", "eps": 0.1, "target": 3,
                                                         "indices": [0]}, 422, "targeted"),
    ("an L2 budget past the image's norm", "attack", "classifier", {"method": "pgd", "eps": 9, "norm": "l2",
                                                                    "indices": [0]}, 422, "eps"),
    ("a classifier on a detector", "defend", "flow", {"method": "detect", "indices": [0], "classifier": "c"}, 422,
     "classifier"),
    ("a generative model as judge", "attack", "vae", {"method": "reconstruction", "eps": 2.0, "norm": "l2",
                                                      "target": 3, "indices": [0], "classifier": "vae"}, 422,
     "classifier"),
    ("unknown field", "attack", "classifier", {"method": "fgsm", "eps": 0.1, "indices": [0], "colour": 1}, 422,
     "colour"),
]


def test_images_of_another_size_or_depth_are_422s(client):
    import torch

    r = client.post("/v1/attack/classifier", json={"method": "fgsm", "eps": 0.1, "inputs": [_png(torch.rand(1, 9, 9))]})
    assert r.status_code == 422 and "shape" in r.text
    huge = io.BytesIO()  # 24 KB of PNG that would decode to 196 megapixels
    Image.new("1", (14000, 14000)).save(huge, "PNG")
    deep = io.BytesIO()  # 16-bit pixels, which 8-bit conversion would clip to white
    Image.new("I;16", (8, 8)).save(deep, "PNG")
    for data in (huge.getvalue(), deep.getvalue()):
        r = client.post("/v1/defend/flow", json={"method": "detect", "inputs": [base64.b64encode(data).decode()]})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "inputs"], r.text


def test_robustness_metrics_and_schemas(client):
    before = _samples(client.get("/metrics").text)
    assert client.post("/v1/attack/classifier", json={"method": "fgsm", "eps": 0.2, "indices": [0, 1, 2]}
                       ).status_code == 200
    assert client.post("/v1/attack/classifier", json={"method": "fgsm", "eps": 9}).status_code == 422
    assert client.post("/v1/attack/classifier", json={"method": "x" * 30, "eps": 0.1}).status_code == 422
    assert client.post("/v1/defend/flow", json={"method": "detect", "indices": [0, 1]}).status_code == 200
    after = _samples(client.get("/metrics").text)
    for capability in ("attack", "defend"):  # every capability's requests and latency alike
        assert after[("TYPE", f"genray_{capability}_requests")] == "counter"
        assert after[("TYPE", f"genray_{capability}_latency_seconds")] == "histogram"
    assert after[("TYPE", "genray_attack_inputs")] == "counter" and after[("TYPE", "genray_defend_inputs")] == "counter"

    delta = _delta(before, after)
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


# ---- explanations: /v1/explain ------------------------------------------------------------------
def _explain(client, model: str, body: dict, status: int = 200) -> dict:
    r = client.post(f"/v1/explain/{model}", json=body)
    assert r.status_code == status, r.text
    return r.json()


def test_explain_image_models(client):
    body = _explain(client, "classifier", {"method": "ig", "indices": [0, 1], "evaluate": True})
    assert body["method"] == "ig" and len(body["attributions"]) == 2
    assert [len(body["attributions"][0]), len(body["attributions"][0][0])] == [1, 8]
    assert all(_image(p).size[1] >= 224 for p in body["pictures"])
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


BAD_ROBUST_AND_EXPLAIN = BAD_ROBUST + [(case, "explain", *rest) for case, *rest in BAD_EXPLAIN]


@pytest.mark.parametrize("case,endpoint,model,body,status,field", BAD_ROBUST_AND_EXPLAIN,
                         ids=[b[0] for b in BAD_ROBUST_AND_EXPLAIN])
def test_bad_attack_defense_and_explain_input_gets_a_clear_4xx(client, case, endpoint, model, body, status, field):
    r = client.post(f"/v1/{endpoint}/{model}", json=body)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    if field:
        assert any(field in e["loc"] for e in detail), detail
    else:
        assert "unknown model" in detail


def test_explain_metrics_and_schema(client):
    before = _samples(client.get("/metrics").text)
    _explain(client, "classifier", {"method": "saliency", "indices": [0, 1], "evaluate": True})
    _explain(client, "classifier", {"method": "saliency", "indices": [0], "n_steps": 3}, status=422)
    _explain(client, "classifier", {"method": "y" * 20, "indices": [0]}, status=422)
    after = _samples(client.get("/metrics").text)
    assert after[("TYPE", "genray_explain_requests")] == "counter"
    assert after[("TYPE", "genray_explain_latency_seconds")] == "histogram"
    assert after[("TYPE", "genray_explain_deletion_auc_ratio")] == "summary"

    delta = _delta(before, after)
    assert delta("genray_explain_requests_total", model="classifier", method="saliency", status="200") == 1
    assert delta("genray_explain_requests_total", model="classifier", method="saliency", status="422") == 1
    assert delta("genray_explain_requests_total", model="classifier", method="_invalid", status="422") == 1
    assert delta("genray_explain_latency_seconds_count", method="saliency") == 2
    assert delta("genray_explain_deletion_auc_ratio_count", model="classifier", method="saliency") >= 1
    paths = client.get("/openapi.json").json()["paths"]
    body = paths["/v1/explain/{model}"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert {"method", "inputs", "prompt", "series", "n_steps", "n_samples", "evaluate", "format"} <= set(
        body["properties"])


def test_python_client_returns_decoded_samples_and_names_bad_fields(client, keys, monkeypatch):
    import asyncio

    from genray.client import AsyncClient, Client, GenrayError, Music

    with Client(str(client.base_url), timeout=120) as c, pytest.raises(GenrayError) as e:
        c.models()
    assert e.value.status == 401
    monkeypatch.setenv("GENRAY_KEY", keys["admin"])  # what `genray serve` prints for this machine
    with Client(str(client.base_url), timeout=120) as c:
        assert c.health()["status"] == "ok" and {m["name"] for m in c.models()} >= {"vae", "chorale", "ar"}
        images = c.generate("vae", n=2, label=4, seed=9)
        assert images.model == "vae" and [im.size for im in images.samples] == [(8, 8), (8, 8)]
        raw = client.post("/v1/generate/vae", json={"n": 2, "label": 4, "seed": 9}).json()["samples"]
        assert [im.tobytes() for im in images.samples] == [Image.open(io.BytesIO(base64.b64decode(s))).tobytes()
                                                           for s in raw]  # the same seed, the same pixels
        text = c.generate("transformer", prompt="KING", max_tokens=10, seed=5).samples[0]
        assert isinstance(text, str) and text.startswith("KING") and len(text) == 14
        assert "KING" + "".join(c.stream("transformer", prompt="KING", max_tokens=10, seed=5)) == text
        chorale = c.compose("F", 2, seed=1, wav=True)
        assert chorale["midi"][:4] == b"MThd" and chorale["wav"][:4] == b"RIFF" and chorale["key"] == "F major"
        with pytest.raises(GenrayError) as e:
            list(c.stream("transformer", prompt="KING", top_p=2))
        assert e.value.status == 422 and e.value.field == "top_p"
        tune = c.generate("chorale", prompt="G4/1 A4/1", max_tokens=8, seed=2, wav=True).samples[0]
        assert isinstance(tune, Music) and tune.midi[:4] == b"MThd" and tune.wav[:4] == b"RIFF"
        assert all(isinstance(v, float) for v in c.generate("ar", max_tokens=5, seed=1).samples[0])
        with pytest.raises(GenrayError) as e:
            c.generate("nope")
        assert e.value.status == 404
        with pytest.raises(GenrayError) as e:
            c.generate("vae", n=1, temperature=0.5)  # the vae takes no temperature
        assert e.value.status == 422 and e.value.field == "temperature"

    async def run():
        async with AsyncClient(str(client.base_url), timeout=120) as ac:
            pieces = [p async for p in ac.stream("transformer", prompt="KING", max_tokens=10, seed=5)]
            return pieces, await asyncio.gather(*(ac.generate("gan", n=1, label=3, seed=s) for s in range(3)))

    pieces, gans = asyncio.run(run())
    assert "KING" + "".join(pieces) == text
    assert [g.samples[0].size for g in gans] == [(8, 8)] * 3


def test_compose_answers_a_checked_chorale_and_harmonises_a_melody(client):
    before = _samples(client.get("/metrics").text)
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
    after = _samples(client.get("/metrics").text)
    delta = _delta(before, after)
    assert delta("genray_compose_requests_total", model="theory", method="compose", status="200") == 2
    assert delta("genray_compose_requests_total", method="harmonise", status="200") == 1
    assert delta("genray_compose_requests_total", status="422") == 4
    assert delta("genray_compose_latency_seconds_count") == 7
    assert "/v1/compose" in client.get("/openapi.json").json()["paths"]


def _png_of(array: np.ndarray) -> str:
    """A uint8 array (H, W) or (H, W, 3) as a base64 PNG."""
    t = torch.from_numpy(array)
    return _png(t[None] if t.dim() == 2 else t.permute(2, 0, 1))


def test_inpaint_keeps_the_seen_pixels_and_names_bad_fields(client, keys):
    from genray.client import Client

    before = _samples(client.get("/metrics").text)
    image = np.zeros((8, 8), dtype=np.uint8)
    image[1:7, 3] = 200  # a stroke, like the digits' 1
    drawn = np.zeros((8, 8), dtype=np.uint8)
    drawn[2:6, 1:5] = 255  # white: missing
    for model, extra in (("vae", {}), ("flow", {"method": "langevin"})):
        body = {"inputs": [_png_of(image)], "mask": _png_of(drawn), "n": 2, "steps": 10, "seed": 3, **extra}
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
    assert len(scored["images"]) == 1 and scored["images"][0].size == (8, 8) and 0 < scored["psnr"][0] <= 100

    small = np.full((5, 5), 255, dtype=np.uint8)
    bads = (("vae", {"indices": [0], "mask": _png_of(small)}, "mask"), ("vae", {}, "inputs"),
            ("vae", {"indices": [0], "method": "map"}, "method"), ("flow", {"indices": [0], "label": 1}, "label"),
            ("vae", {"inputs": ["not base64!"]}, "inputs"), ("vae", {"indices": [0], "mask": "circle"}, "mask"),
            ("vae", {"indices": [0], "steps": 5000}, "steps"), ("vae", {"indices": [10**6]}, "indices"),
            ("flow", {"inputs": [_png_of(small)]}, "inputs"), ("vae", {"indices": [0], "fraction": 0.2}, "fraction"),
            ("vae", {"indices": [0, 1, 2], "n": 6}, "n"))
    for model, bad, field in bads:
        r = client.post(f"/v1/inpaint/{model}", json=bad)
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["detail"][0]["loc"][:2] == ["body", field], (bad, r.text)
    assert client.post("/v1/inpaint/markov", json={"indices": [0]}).status_code == 404
    after = _samples(client.get("/metrics").text)
    delta = _delta(before, after)
    assert delta("genray_inpaint_requests_total", model="vae", method="latent", status="200") == 2
    assert delta("genray_inpaint_requests_total", model="flow", method="langevin", status="200") == 1
    assert delta("genray_inpaint_requests_total", model="vae", method="latent", status="422") == 7
    assert delta("genray_inpaint_requests_total", model="vae", method="_invalid", status="422") == 2
    assert delta("genray_inpaint_latency_seconds_count", model="vae") == 11
    assert "/v1/inpaint/{model}" in client.get("/openapi.json").json()["paths"]


def test_style_transfer_answers_a_png_with_its_scores_and_names_bad_fields(client):
    before = _samples(client.get("/metrics").text)
    content = np.zeros((24, 40, 3), dtype=np.uint8)
    content[6:18, 10:30] = (200, 180, 40)  # a yellow box on black
    r = client.post("/v1/style", json={"content": _png_of(content), "style": "brick", "steps": 20, "max_side": 32,
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
    r = client.post("/v1/style", json={"content": _png_of(content), "model": "brick-net", "max_side": 32})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "brick-net" and body["version"] >= 1
    assert Image.open(io.BytesIO(base64.b64decode(body["image"]))).size == (32, 19)
    assert body["summary"]["style_distance_before"] > 0 and 0 < body["summary"]["content_ssim"] <= 1
    delta = _delta(before, _samples(client.get("/metrics").text))
    assert delta("genray_style_requests_total", model="random-features", method="optimise", status="200") == 2
    assert delta("genray_style_requests_total", model="brick-net", method="network", status="200") == 1
    assert delta("genray_style_requests_total", status="422") == 8
    assert delta("genray_style_requests_total", status="404") == 1
    assert delta("genray_style_latency_seconds_count") == 12
    assert "/v1/style" in client.get("/openapi.json").json()["paths"]


PAPER = ["Parsing is hard because natural language is ambiguous.", "Prior parsers fail on long sentences.",
         "We propose a chart parser with learned pruning.", "Our parser scores each span with a small network.",
         "Experiments show that it improves accuracy by 2 points.", "We thank the reviewers."]


def test_summarize_by_methods_and_registry_models_and_names_bad_fields(client, keys):
    from genray.client import Client

    before = _samples(client.get("/metrics").text)
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
        picks = [c.summarize("random", PAPER, "outcome", seed=3, max_sentences=2)["sentences"] for _ in range(2)]
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
    delta = _delta(before, _samples(client.get("/metrics").text))
    assert delta("genray_summarize_requests_total", model="lead", method="approach", status="200") == 1
    assert delta("genray_summarize_requests_total", model="summarizer", method="challenge", status="200") == 1
    assert delta("genray_summarize_requests_total", model="random", method="outcome", status="200") == 2
    # The aspect is the method label: unparsed or bad, it is "_invalid".
    assert delta("genray_summarize_requests_total", model="lead", method="_invalid", status="422") == 4
    assert delta("genray_summarize_latency_seconds_count", model="lead") == 10
    assert "/v1/summarize/{model}" in client.get("/openapi.json").json()["paths"]


def test_python_client_retries_what_the_server_asks_it_to():
    """A server that answers 503 (Retry-After: 0) twice, then 200: retried through; without retries, raised.
    A 500 that genray did not write (no JSON detail) is retried; genray's own is not."""
    import http.server
    import json
    import threading

    from genray.client import Client, GenrayError

    calls = []

    class Flaky(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            calls.append(self.path)
            busy = len(calls) % 3 != 0
            if self.path == "/v1/models":  # the serving layer's own 500 (a lost replica), then genray's
                busy = len(calls) == 1
                status, body = (500, b"Internal Server Error") if busy else (500, b'{"detail": "internal error"}')
            else:
                status = 503 if busy else 200
                body = json.dumps({"detail": "overloaded"} if busy else {"status": "ok", "models": 0}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Retry-After", "0")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        with Client(url, retries=3) as c:
            assert c.health() == {"status": "ok", "models": 0} and len(calls) == 3
        with Client(url, retries=0) as c, pytest.raises(GenrayError) as e:
            c.health()
        assert e.value.status == 503 and "overloaded" in str(e.value)
        calls.clear()
        with Client(url, retries=3) as c, pytest.raises(GenrayError) as e:
            c.models()
        assert len(calls) == 2 and e.value.detail == "internal error"  # genray's own 500 is not retried
    finally:
        server.shutdown()
