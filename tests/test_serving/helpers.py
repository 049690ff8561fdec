"""What more than one of the service's test modules reads: a free port, /metrics parsed, images as base64 PNGs, SSE."""
import base64
import io
import json
import socket

import numpy as np
import torch
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metric_samples(text: str) -> dict:
    """Prometheus exposition text parsed by prometheus_client: {(sample name, labels): value},
    and the metric families' types under ("TYPE", family name)."""
    out = {}
    for family in text_string_to_metric_families(text):
        out[("TYPE", family.name)] = family.type
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def scrape_until(client, ready, timeout_s: float = 10.0) -> dict:
    """/metrics parsed, once ready(samples) holds: the model replicas push theirs every second."""
    import time

    deadline = time.time() + timeout_s
    while True:
        samples = metric_samples(client.get("/metrics").text)
        if ready(samples) or time.time() > deadline:
            return samples
        time.sleep(0.25)


def settled_metrics(client, timeout_s: float = 10.0) -> dict:
    """/metrics parsed once the model replicas' pushes have caught up with earlier traffic:
    two scrapes a push interval apart agree."""
    import time

    deadline = time.time() + timeout_s
    samples = metric_samples(client.get("/metrics").text)
    while time.time() < deadline:
        time.sleep(1.5)  # longer than one push interval (METRICS_PUSH_S)
        again = metric_samples(client.get("/metrics").text)
        if again == samples:
            break
        samples = again
    return samples


def metric_total(samples: dict, name: str, **labels) -> float:
    """The sum of sample `name` over the series whose labels include `labels`."""
    return sum(v for (n, series), v in samples.items() if n == name and set(labels.items()) <= set(series))


def counts_moved(before: dict, after: dict):
    """(sample name, **labels) -> how much those samples moved between two scrapes."""
    def delta(name, **labels):
        return metric_total(after, name, **labels) - metric_total(before, name, **labels)
    return delta


def png_b64(img) -> str:
    from genray.models.codecs.images import to_png

    return base64.b64encode(to_png(img)).decode()


def decoded(s: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(s)))


def png_of_array(array: np.ndarray) -> str:
    """A uint8 array (H, W) or (H, W, 3) as a base64 PNG."""
    t = torch.from_numpy(array)
    return png_b64(t[None] if t.dim() == 2 else t.permute(2, 0, 1))


def sse_events(response) -> list:
    assert response.headers["content-type"].startswith("text/event-stream")
    lines = [line[len("data: "):] for line in response.text.split("\n\n") if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def assert_clear_4xx(response, status: int, field: str | None) -> None:
    """A refusal with `status`: a 422 whose detail names `field`, or (no field) an unknown model's 404."""
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    if field:
        assert any(field in e["loc"] for e in detail), detail
    else:
        assert "unknown model" in detail
