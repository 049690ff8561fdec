"""genray.client: against the deployed service, and retrying what a flaky server of its own asks it to."""
import base64
import io

import pytest
from PIL import Image


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
        chorale = c.compose(key="F", bars=2, seed=1, wav=True)
        assert chorale.midi[:4] == b"MThd" and chorale.wav[:4] == b"RIFF" and chorale.key == "F major"
        assert chorale.model == "theory" and chorale.version is None
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
