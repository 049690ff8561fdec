"""What the gateway does for every endpoint: keys, scopes, rate limits, body size, statuses, metrics, the playground."""
from concurrent.futures import ThreadPoolExecutor

from .helpers import counts_moved, metric_total, scrape_until, settled_metrics


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
    after = scrape_until(client, lambda m: metric_total(m, requests, model="markov", status="413") >= 2)
    assert metric_total(after, requests, model="markov", status="401") >= 2
    assert metric_total(after, requests, model="markov", status="429") >= 1
    assert metric_total(after, requests, model="markov", status="413") >= 2


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
    before = settled_metrics(client)  # the tests before this one may still be on their way to the board
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda i: client.post("/v1/generate/vae", json={"n": 2, "seed": i}).status_code,
                              range(16)))
    assert codes == [200] * 16
    client.post("/v1/generate/vae", json={"n": 999})
    r = client.get("/metrics")
    assert r.headers["content-type"].startswith("text/plain; version=")  # the Prometheus text format
    # Every replica's counts, merged at the gateway (a model replica pushes its own every second).
    after = scrape_until(client, lambda m: counts_moved(before, m)("genray_generate_latency_seconds_count",
                                                                   model="vae") >= 17)
    assert after[("TYPE", "genray_generate_requests")] == "counter"
    assert after[("TYPE", "genray_samples_generated")] == "counter"
    assert after[("TYPE", "genray_generate_latency_seconds")] == "histogram"
    assert after[("TYPE", "genray_batch_size")] == "histogram"

    delta = counts_moved(before, after)
    assert delta("genray_generate_requests_total", model="vae", method="json", status="200") == 16
    assert delta("genray_generate_requests_total", model="vae", status="422") == 1
    assert delta("genray_samples_generated_total", model="vae") == 32
    assert delta("genray_generate_latency_seconds_count", model="vae") == 17
    assert delta("genray_generate_latency_seconds_bucket", model="vae", le="+Inf") == 17
    batches = delta("genray_batch_size_count", model="vae")
    assert 1 <= batches <= 16 and delta("genray_batch_size_sum", model="vae") == 32


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
