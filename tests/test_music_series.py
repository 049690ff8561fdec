"""The music codec, the sequence families on note events, AR(p), and the image judge (no Ray)."""
import io
import math
import wave

import numpy as np
import pytest
import torch

from genray.models import build, modalities
from genray.models.classifiers import ImageClassifier, frechet_distance
from genray.models.codecs import EventVocab, make_vocab, music
from genray.models.errors import OptionError
from genray.models.optim import OptimizerSettings

MELODY = ["G4/1", "G4/1", "D5/1", "R/0.5", "B4/0.5", "A4/1.5", "F#4/0.25", "G4/2"]


def test_melody_survives_midi_and_renders_as_wav():
    assert music.from_midi(music.to_midi(MELODY)) == MELODY
    with wave.open(io.BytesIO(music.to_wav(MELODY, bpm=120))) as w:
        seconds = w.getnframes() / w.getframerate()
    assert seconds == pytest.approx(sum(float(e.split("/")[1]) for e in MELODY) / 2, rel=0.01)
    assert music.to_midi(MELODY + ["|", "C4/1"]) == music.to_midi(MELODY)  # a piece ends at '|'


def test_events_parse_transpose_and_snap():
    assert music.parse_event("F#4/0.5") == (66, 0.5) and music.parse_event("R/2") == (None, 2.0)
    assert music.parse_event("|") is None
    assert music.transpose(["C4/1", "R/1", "|"], 2) == ["D4/1", "R/1", "|"]
    assert music.event(60, 1 / 3) == "C4/0.25" and music.event(None, 4.5) == "R/4"
    for bad in ("C4", "H4/1", "C4/0", "C99/1"):
        with pytest.raises(ValueError):
            music.parse_event(bad)


def test_event_vocab_round_trips_and_names_unknown_events():
    v = EventVocab.from_pieces([MELODY])
    assert isinstance(make_vocab(v.symbols), EventVocab) and v.start == v.stop == "|"
    ids = v.encode(" ".join(MELODY))
    assert v.decode(ids) == MELODY
    assert v.unknown("G4/1 C9/1") == ["C9/1"]
    with pytest.raises(ValueError, match="C9/1"):
        v.encode("C9/1")


@pytest.mark.parametrize("family", ["markov", "rnn", "transformer"])
def test_sequence_families_learn_and_compose_melodies(family):
    torch.manual_seed(0)
    vocab = EventVocab.from_pieces([MELODY])
    piece = vocab.encode(["|"] + MELODY * 6)
    rows = torch.as_tensor(np.stack([piece[:33], piece[16:49]]))  # (2, 33)
    extra = {"block_size": 32, "n_layer": 1, "n_embd": 32, "n_head": 2} if family == "transformer" else {}
    m = build({"family": family, "vocab": vocab.symbols, **extra})
    assert m.modality == "music" and m.nll_unit == "nats/note"
    opts = m.make_optimizers(OptimizerSettings(lr=1e-2))
    before = m.eval_nll({"tokens": rows})[0]
    for _ in range(40 if opts else 1):
        m.train_step({"tokens": rows}, opts)
    m.reduce_statistics(lambda t: None)
    assert m.eval_nll({"tokens": rows})[0] < 0.5 * before
    out = m.sample(3, prompt="G4/1 G4/1", max_tokens=12, generator=torch.Generator().manual_seed(1))
    for s in out:
        assert s[:2] == ["G4/1", "G4/1"] and len(s) <= 14 and "|" not in s
        assert music.from_midi(music.to_midi(s)) == music.trim(s)
    streamed = [[], [], []]
    for step in m.stream(3, prompt="G4/1 G4/1", max_tokens=12, generator=torch.Generator().manual_seed(1)):
        for i, events in step:
            streamed[i] += events
    assert [["G4/1", "G4/1"] + s for s in streamed] == out
    with pytest.raises(OptionError, match="stop"):
        m.sample(1, stop=["G4/1"])


def _ar2(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y = np.zeros(n)
    for t in range(2, n):
        y[t] = 1.0 + 0.6 * y[t - 1] - 0.3 * y[t - 2] + rng.normal(scale=0.5)
    return y


def test_ar_fit_from_summed_worker_statistics_recovers_the_process():
    tables, meta = modalities.get("series").tables(_ar2(4000))
    train = tables["train"]
    s = np.stack(train.column("series").to_numpy(zero_copy_only=False)).copy()
    first = train.column("first").to_numpy()
    m = build({"family": "ar", "max_order": 8})
    half = len(s) // 2  # two workers' shards, summed as reduce_statistics would across workers
    workers = [build(m.config()) for _ in range(2)]
    for w, sl in zip(workers, (slice(0, half), slice(half, None))):
        w.train_step({"series": torch.tensor(s[sl]), "first": torch.tensor(first[sl])}, [])
    total = {n: sum(getattr(w, f"pending_{n}") for w in workers) for n in ("xtx", "xty", "yty", "count")}
    for n, v in total.items():
        getattr(m, f"pending_{n}").copy_(v)
    m.reduce_statistics(lambda t: None)
    assert int(m.order) >= 2
    assert m.coef[:3].tolist() == pytest.approx([1.0, 0.6, -0.3], abs=0.08)
    assert math.sqrt(float(m.sigma2)) == pytest.approx(0.5, rel=0.05)
    # the fit from both shards equals one fit over the whole series
    whole = build(m.config())
    whole.train_step({"series": torch.tensor(s), "first": torch.tensor(first)}, [])
    whole.reduce_statistics(lambda t: None)
    assert torch.allclose(whole.coef, m.coef)

    paths = m.sample(2, max_tokens=500, generator=[torch.Generator().manual_seed(i) for i in range(2)])
    assert [len(p) for p in paths] == [500, 500] and paths[0] != paths[1]
    assert np.mean(paths[0]) == pytest.approx(1.0 / 0.7, abs=0.25)  # the stationary mean
    one = m.sample(1, prompt=[1.0, 2.0, 1.5] * 3, max_tokens=5, temperature=1e-6)[0]
    mean_path = m.sample(1, prompt=[1.0, 2.0, 1.5] * 3, max_tokens=5, temperature=1e-6)[0]
    assert one == pytest.approx(mean_path, abs=1e-4)  # no noise: the mean forecast
    with pytest.raises(ValueError, match="at least"):
        m.sample(1, prompt=[1.0], max_tokens=3)


def test_series_windows_score_every_value_once():
    from genray.models.modalities.series import CONTEXT

    values = np.arange(300, dtype=float)
    tables, meta = modalities.get("series").tables(values)
    seen = []
    for t in (tables["train"], tables["val"], tables["test"]):
        for row, f in zip(t.column("series").to_pylist(), t.column("first").to_pylist()):
            seen += row[f:]
    assert seen == list(values)  # each value is a target exactly once, in order: train, then val, then test
    assert tables["test"].column("first").to_pylist()[0] == CONTEXT
    assert (meta["train_len"], meta["val_len"], meta["test_len"]) == (240, 30, 30)


def test_frechet_distance_and_judge():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 8))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(a, a + 1.0) == pytest.approx(8.0, rel=0.05)  # squared mean shift
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.as_tensor(np.round(d.images * 255 / 16), dtype=torch.uint8).unsqueeze(1)
    y = torch.as_tensor(d.target)
    torch.manual_seed(0)
    judge = ImageClassifier([1, 8, 8], 10).fit(x[:1500], y[:1500], epochs=6)
    assert judge.accuracy(x[1500:], y[1500:]) > 0.85
    assert judge.frechet_distance(x[:300], x[1500:]) < judge.frechet_distance(torch.rand(300, 1, 8, 8), x[1500:])


def test_user_midi_folder_and_series_parquet_become_data_sets(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from genray.cluster.storage import Storage
    from genray.trainers.datasets import local_arrays, prepare

    songs = tmp_path / "songs"
    songs.mkdir()
    tunes = [MELODY, music.transpose(MELODY[::-1], 3), ["C4/1", "E4/1", "G4/2", "R/1", "C5/4"]]
    for i, t in enumerate(tunes):
        (songs / f"{i}.mid").write_bytes(music.to_midi(t))
    store = Storage(str(tmp_path / "home"))
    meta = prepare(str(songs), store)
    assert meta["modality"] == "music" and meta["pieces"] == 3 and "|" in meta["vocab"]
    rows = local_arrays(meta, "train", store)["tokens"]
    assert rows.shape[1] == meta["seq_len"] and int(rows.max()) < len(meta["vocab"])

    pq.write_table(pa.table({"value": _ar2(200)}), tmp_path / "series.parquet")
    meta = prepare(str(tmp_path / "series.parquet"), store)
    assert meta["modality"] == "series" and meta["train_len"] == 160
