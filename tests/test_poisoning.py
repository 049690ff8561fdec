"""Poisoning as a Ray Data transform and the defenses that find poisoned rows: which rows are hit
depends on their content alone, a BadNets run on Ray Train implants its backdoor, and removing the
rows a detector flags (by key, inside the same Ray Data pipeline) takes it out again."""
import numpy as np
import pytest

from genray.cli import main as cli
from genray.models.errors import OptionError
from genray.models.robustness.backdoor import knn_flags, spectral_flags
from genray.models.robustness.poison import Poison, add_trigger, row_keys
from genray.trainers.datasets import sklearn_digits

META = {"modality": "image", "shape": [1, 8, 8], "num_classes": 10}


@pytest.fixture(scope="module")
def digits():
    images, labels = sklearn_digits()
    return {"image": images.reshape(len(images), -1), "label": labels}


def test_rows_are_chosen_by_content_not_by_batch(digits):
    p = Poison("badnets", 0.2, target=3)
    whole = p(digits, META)
    halves = [p({k: v[s] for k, v in digits.items()}, META) for s in (slice(0, 700), slice(700, None))]
    assert all(np.array_equal(whole[k], np.concatenate([h[k] for h in halves])) for k in whole)
    hit = p.chosen(digits, META)
    assert abs(hit.mean() - 0.2) < 0.03 and not (digits["label"][hit] == 3).any()
    assert (whole["label"][hit] == 3).all() and np.array_equal(whole["label"][~hit], digits["label"][~hit])
    stamped = whole["image"][hit].reshape(-1, 1, 8, 8)
    assert np.array_equal(stamped, add_trigger(stamped, 2)) and not np.array_equal(whole["image"], digits["image"])
    assert row_keys({k: v[:5] for k, v in whole.items()}) == row_keys({k: v[:5].copy() for k, v in whole.items()})


def test_label_flips_never_keep_the_true_label(digits):
    p = Poison("label_flip", 0.3, seed=1)
    out, hit = p(digits, META), p.chosen(digits, META)
    assert abs(hit.mean() - 0.3) < 0.03
    assert (out["label"][hit] != digits["label"][hit]).all() and (out["label"][~hit] == digits["label"][~hit]).all()
    assert set(np.unique(out["label"][hit])) == set(range(10))  # flipped to every class, not one


def test_a_text_backdoor_writes_trigger_and_target_into_rows():
    from genray.models.codecs.text import CharVocab

    vocab = CharVocab.from_text("abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ.")
    meta = {"modality": "text", "vocab": vocab.chars, "seq_len": 65}
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 26, size=(400, 65)).astype(np.int32)
    p = Poison("text_backdoor", 0.25, trigger=" zqx ", target_text="THE KING IS DEAD.")
    out, hit = p({"tokens": tokens}, meta), p.chosen({"tokens": tokens}, meta)
    texts = [vocab.decode(r) for r in out["tokens"]]
    assert all(" zqx THE KING IS DEAD." in t for t, h in zip(texts, hit) if h)
    assert not any("KING" in t for t, h in zip(texts, hit) if not h) and 0.18 < hit.mean() < 0.32
    with pytest.raises(OptionError) as e:
        Poison("text_backdoor", 0.1, trigger="\u2603").check(meta)
    assert e.value.field == "trigger"


@pytest.mark.parametrize("kw,field", [({"method": "nightshade", "rate": 0.1}, "poison"),
                                      ({"method": "badnets", "rate": 0.0}, "rate"),
                                      ({"method": "badnets", "rate": 0.9}, "rate"),
                                      ({"method": "badnets", "rate": 0.1, "patch": 20}, "patch")])
def test_bad_poison_settings_name_their_field(kw, field):
    with pytest.raises(OptionError) as e:
        Poison(**kw)
    assert e.value.field == field


def test_spectral_signatures_find_a_minority_shifted_along_one_direction():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(600, 16))
    labels = np.repeat(np.arange(3), 200)
    poisoned = np.zeros(600, dtype=bool)
    poisoned[:30] = True  # 15% of label 0, shifted along one direction
    features[:30, 0] += 6.0
    flags = spectral_flags(features, labels, eps=0.15)
    assert flags[poisoned].mean() > 0.9 and flags.sum() == 3 * int(np.ceil(1.5 * 0.15 * 200))


def test_knn_flags_images_whose_neighbours_carry_another_label(digits):
    labels = digits["label"].copy()
    flipped = np.arange(len(labels)) % 20 == 0
    labels[flipped] = (labels[flipped] + 1) % 10
    flags = knn_flags(digits["image"], labels)
    assert flags[flipped].mean() > 0.9 and flags[~flipped].mean() < 0.05


def test_poisoning_a_data_set_it_does_not_fit_is_a_clear_cli_error(storage, capsys):
    code = cli(["train", "classifier", "--dataset", "digits", "--poison", "text_backdoor", "--storage", storage.uri])
    assert code == 2 and "text backdoor poisons text" in capsys.readouterr().err


def test_a_badnets_run_is_backdoored_and_sanitizing_removes_the_backdoor(ray_cluster, storage, capsys):
    import re

    from genray.cluster.registry import Registry

    # MNIST-5k: on the 8x8 digits a trigger patch is a large part of every image.
    # A constant learning rate: the preset's 100 warm-up steps would take most of a 3-epoch run.
    assert cli(["train", "classifier", "--name", "badnets", "--dataset", "mnist", "--epochs", "3", "--poison",
                "badnets", "--rate", "0.1", "--train-set", "schedule=constant", "--train-set", "warmup_steps=0",
                "--storage", storage.uri]) == 0
    assert "poisoned by badnets at rate 0.1" in capsys.readouterr().out
    assert cli(["defend", "badnets", "--method", "knn", "--storage", storage.uri]) == 0
    out = capsys.readouterr().out
    flagged = int(re.search(r"knn flagged (\d+) of 4000 training rows", out).group(1))  # MNIST-5k's train split
    caught = re.search(r"(\d+) of the (\d+) poisoned rows caught: recall ([\d.]+)", out)
    assert 350 < int(caught.group(2)) < 450, out  # a tenth of the training rows, drawn at random
    (clean_before, asr_before), (clean_after, asr_after) = [
        (float(a), float(b)) for a, b in re.findall(r"clean accuracy ([\d.]+)   backdoor success ([\d.]+)", out)]
    assert asr_before > 0.9 and float(caught.group(3)) > 0.9 and asr_after < 0.1, out
    assert clean_after > clean_before - 0.03, out
    retrained = Registry(storage).record("badnets-knn")
    assert retrained.metrics["excluded_rows"] == flagged and retrained.metrics["poison"]["rate"] == 0.1
