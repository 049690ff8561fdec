"""Model registry: versions, refs, atomic publish, safetensors only."""
import pytest
import torch

from genray.cluster.registry import MARKER, Registry, RegistryError
from genray.cluster.storage import Storage
from genray.models import build


def _model(seed):
    torch.manual_seed(seed)
    return build({"family": "transformer", "vocab": "abc\n", "n_layer": 1, "n_embd": 16, "n_head": 2,
                  "block_size": 8})


def test_publish_list_and_load_versions(tmp_path):
    reg = Registry(Storage(str(tmp_path)))
    m1, m2 = _model(1), _model(2)
    r1 = reg.publish("gpt", m1, {"val_nll": 1.5})
    r2 = reg.publish("gpt", m2, {"val_nll": 1.2})
    assert (r1.version, r2.version) == (1, 2)
    assert reg.names() == ["gpt"] and reg.versions("gpt") == [1, 2]
    latest, rec = reg.load("gpt")
    assert rec.version == 2 and rec.metrics["val_nll"] == 1.2
    assert torch.equal(latest.lm_head.weight, m2.lm_head.weight)
    # Tied weights survive the round trip as one parameter.
    assert latest.wte.weight.data_ptr() == latest.lm_head.weight.data_ptr()
    first, _ = reg.load("gpt@1")
    assert torch.equal(first.lm_head.weight, m1.lm_head.weight)
    files = sorted(p.name for p in (tmp_path / "models" / "gpt" / "1").iterdir())
    assert files == [MARKER, "config.json", "metrics.json", "weights.safetensors"]


def test_crash_mid_publish_leaves_previous_version(tmp_path, monkeypatch):
    storage = Storage(str(tmp_path))
    reg = Registry(storage)
    reg.publish("gpt", _model(1), {"val_nll": 1.5})
    real = storage.write_json

    def die_on_metrics(path, obj):
        if path.endswith("metrics.json"):
            raise OSError("disk full")
        return real(path, obj)

    monkeypatch.setattr(storage, "write_json", die_on_metrics)
    with pytest.raises(OSError):
        reg.publish("gpt", _model(2), {"val_nll": 1.0})
    monkeypatch.undo()
    assert reg.versions("gpt") == [1]
    assert reg.record("gpt").version == 1
    # The next publish skips past the half-written version instead of reusing it.
    assert reg.publish("gpt", _model(3), {}).version == 3


def test_bad_refs(tmp_path):
    reg = Registry(Storage(str(tmp_path)))
    reg.publish("gpt", _model(1), {})
    with pytest.raises(RegistryError, match="no model named"):
        reg.load("nope")
    with pytest.raises(RegistryError, match="no version 7"):
        reg.load("gpt@7")
    with pytest.raises(RegistryError, match="invalid version"):
        reg.load("gpt@x")
    with pytest.raises(RegistryError, match="invalid model name"):
        reg.publish("../evil", _model(1), {})


@pytest.mark.parametrize("positions", ["learned", "rope"])
def test_transformers_saved_before_rotary_positions_still_load(tmp_path, positions):
    """A config saved before the "positions" setting existed loads as its weights say."""
    import json

    reg = Registry(Storage(str(tmp_path)))
    torch.manual_seed(0)
    old = build({"family": "transformer", "vocab": "abc\n", "n_layer": 1, "n_embd": 16, "n_head": 2,
                 "block_size": 8, "positions": positions})
    reg.publish("gpt", old, {})
    path = tmp_path / "models" / "gpt" / "1" / "config.json"
    config = json.loads(path.read_text())
    del config["positions"]
    path.write_text(json.dumps(config))
    loaded, _ = reg.load("gpt")
    assert loaded.positions == positions
    x = torch.randint(0, 4, (2, 8))
    assert torch.equal(loaded.logits(x)[0], old.eval().logits(x)[0])


def test_racing_publishes_of_one_name_make_distinct_whole_versions(tmp_path):
    import threading

    reg = Registry(Storage(str(tmp_path)))
    models = [_model(s) for s in range(6)]
    barrier, records = threading.Barrier(len(models)), [None] * len(models)

    def publish(i):
        barrier.wait()
        records[i] = reg.publish("gpt", models[i], {"seed": i})

    threads = [threading.Thread(target=publish, args=(i,)) for i in range(len(models))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.version for r in records) == [1, 2, 3, 4, 5, 6]
    for rec in records:
        loaded, again = reg.load(rec.ref)
        assert again.metrics["seed"] == int(rec.metrics["seed"])
        assert torch.equal(loaded.lm_head.weight, models[rec.metrics["seed"]].lm_head.weight)
