"""/v1/generate over HTTP: models, samples of each modality, seeds, bad input, streams, batches, overload, versions."""
import base64
import io
from concurrent.futures import ThreadPoolExecutor

import pytest
import ray
from PIL import Image

from genray.cli import main as cli

from .helpers import sse_events


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
    assert models["markov"]["endpoints"] == ["generate", "explain", "infill"]
    assert models["transformer"]["endpoints"] == ["generate", "attack", "explain", "infill"]
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


# Two sunspot-like cycles: as many values as the AR model's largest order (max_order, 16), since
# the order AIC picks depends on the training rows.
HISTORY = [5.0, 20.0, 60.0, 110.0, 140.0, 120.0, 80.0, 40.0, 15.0, 8.0, 12.0, 35.0, 80.0, 125.0, 150.0, 100.0]


def test_series_model_continues_a_history(client):
    r = client.post("/v1/generate/ar", json={"n": 3, "prompt": HISTORY, "max_tokens": 7, "seed": 4})
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


def test_text_streams_as_server_sent_events_with_stop_and_top_p(client):
    body = {"prompt": "ROMEO:", "max_tokens": 300, "seed": 8, "top_p": 0.9}
    whole = client.post("/v1/generate/transformer", json=body).json()["samples"][0]
    stop = whole[len("ROMEO:") + 20: len("ROMEO:") + 22]  # two characters the sample reaches
    cut = whole.index(stop, len("ROMEO:"))
    stopped = client.post("/v1/generate/transformer", json={**body, "stop": [stop]}).json()["samples"][0]
    assert stopped == whole[:cut]
    events = sse_events(client.post("/v1/generate/transformer", json={**body, "stop": [stop], "stream": True}))
    pieces, last = events[:-1], events[-1]
    assert len(pieces) >= 1 and all(set(e) == {"text"} for e in pieces)
    assert "ROMEO:" + "".join(e["text"] for e in pieces) == stopped == last["sample"] and last["done"]
    music = sse_events(client.post("/v1/generate/chorale", json={"prompt": "G4/1", "max_tokens": 16, "seed": 1,
                                                              "stream": True}))
    again = client.post("/v1/generate/chorale", json={"prompt": "G4/1", "max_tokens": 16, "seed": 1}).json()
    assert " ".join(["G4/1"] + [e["events"] for e in music[:-1]]) == again["samples"][0]["events"]
    assert music[-1]["sample"] == again["samples"][0]


def test_one_bad_request_does_not_fail_its_batch(client):
    """A prompt shorter than the AR model's fitted order, among 23 good concurrent requests:
    only its caller gets a 422, with the model's own message and no server internals."""
    bodies = [{"prompt": HISTORY, "max_tokens": 40, "seed": i} for i in range(24)]
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
