"""The music GAN's pieces: piano rolls <-> melodies, the melody statistics it is scored by, and
the GAN over rolls (no Ray; its Ray Train run is the session's `trained`)."""
import numpy as np
import pytest
import torch

from genray.models import build, seeded
from genray.models.codecs.pianoroll import from_roll, to_roll, windows
from genray.models.composition.statistics import (
    compare,
    empty_bars,
    first_bars,
    note_lengths,
    pitch_classes,
    pitch_range,
    uniform_random,
)
from genray.models.modalities import get
from genray.models.optim import OptimizerSettings

pytestmark = pytest.mark.usefixtures("one_thread")

TUNE = ["C4/1", "C4/1", "D4/0.5", "E4/0.5", "R/1", "G4/2", "G4/0.25", "F4/0.75", "E4/1", "R/4", "C5/4"]


def test_a_melody_comes_back_from_its_piano_roll_repeated_notes_and_rests_included():
    roll = to_roll(TUNE, lowest=56, rows=32)
    assert roll.shape == (2, 32, 4 * 16) and roll[1].sum() == 9  # one onset per note
    assert (roll[0].sum(0) == 1).all() and roll[0, 31].sum() == 4 + 16  # one row a step; the rests' row
    assert from_roll(roll.astype(float), lowest=56) == TUNE
    folded = to_roll(["C3/1", "C7/1"], lowest=56, rows=32)  # both outside: moved in by octaves
    assert from_roll(folded.astype(float), lowest=56) == ["C4/1", "C6/1"]
    rows = windows(TUNE * 2, lowest=56, rows=32, bars=2)
    assert all(w.shape == (2, 32, 32) for w in rows) and len(rows) == 7  # from each bar with a full window
    assert from_roll(rows[1].astype(float), 56)[:2] == ["G4/2", "G4/0.25"]  # bar 2 starts at G4


def test_melody_statistics():
    scale = ["C4/1", "D4/1", "E4/1", "F4/1", "G4/2", "R/2"]
    h = pitch_classes(scale)
    assert h.sum() == pytest.approx(1) and h[7] == pytest.approx(2 / 6) and h[1] == 0
    assert empty_bars(scale + ["R/4", "C4/4"]) == pytest.approx(1 / 4) and pitch_range(scale) == 7
    assert note_lengths(scale)[[3, 5]].tolist() == [0.8, 0.2]  # four crotchets, one minim
    assert first_bars(scale, 1) == scale[:4] and first_bars(["C4/6"], 1) == ["C4/4"]
    tonal = [[f"{p}4/1" for p in "CDEFGAB"][i:] + ["C5/1"] for i in range(4)]
    noise = uniform_random(50, tonal, seed=1)
    assert all(e.endswith("/1") for m in noise for e in m)  # the reference's rhythms, random pitches
    assert {len(m) for m in noise} <= {len(m) for m in tonal} and pitch_range(sum(noise, [])) > 12
    assert compare(tonal, tonal)["pitch_class_distance"] == 0
    assert compare(noise, tonal)["pitch_class_distance"] > 0.1


def test_the_music_gan_trains_on_rolls_and_samples_four_bar_melodies():
    rolls = np.stack([w for _ in range(4) for w in windows(TUNE, 60, 16, bars=1)]) * np.uint8(255)
    meta = {"modality": "music", "rows": "bars", "shape": [2, 16, 16], "lowest": 60}
    batch = get("music").to_tensors(meta, {"roll": rolls.reshape(len(rolls), -1)})
    assert batch["image"].shape == (len(rolls), 2, 16, 16) and batch["image"].dtype == torch.uint8
    torch.manual_seed(0)
    model = build({"family": "music-gan", "shape": [2, 16, 16], "lowest": 60, "latent_dim": 4, "hidden": 8})
    opts = model.make_optimizers(OptimizerSettings(lr=2e-3, betas=(0.5, 0.999)))
    before = [p.detach().clone() for p in model.generator.parameters()]
    out = model.train_step(batch, opts)
    assert {"loss", "d_loss", "d_real"} <= set(out) and model.eval_nll(batch) is None
    assert any(not torch.equal(a, b) for a, b in zip(before, model.generator.parameters()))
    melodies = model.sample(3, generator=seeded(2))
    assert len(melodies) == 3
    for m in melodies:  # one bar of sixteenths, as note events
        assert sum(float(e.split("/")[1]) for e in m) == pytest.approx(4, abs=0.76)
    assert model.sample(3, generator=seeded(2)) == melodies
