"""The genray command line: clear errors, listing, sampling to files."""
import io
import re

import pytest
from PIL import Image

from genray.cli import main as cli


def test_unknown_family_is_a_clear_error(storage, capsys):
    assert cli(["train", "nope", "--storage", storage.uri]) == 2
    assert "unknown model family 'nope'" in capsys.readouterr().err


def test_bad_arguments_are_clear_errors(storage, capsys):
    assert cli(["train", "vae", "--workers", "0", "--storage", storage.uri]) == 2
    assert "workers" in capsys.readouterr().err
    assert cli(["train", "vae", "--set", "hidden", "--storage", storage.uri]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    assert cli(["train", "vae", "--train-set", "schedule=sideways", "--storage", storage.uri]) == 2
    assert "schedule must be one of" in capsys.readouterr().err
    assert cli(["train", "vae", "--train-set", "momentum=0.9", "--storage", storage.uri]) == 2
    assert "unknown training setting" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        cli(["train"])
    assert exit_.value.code == 2


def test_models_lists_the_registry(trained, storage, capsys):
    assert cli(["models", "--storage", storage.uri]) == 0
    out = capsys.readouterr().out
    for name in ("markov", "transformer", "vae"):
        assert name in out
    assert "nats/char" in out and "nats/image" in out


def test_sample_writes_a_png_grid_and_text(trained, storage, tmp_path, capsys):
    png = tmp_path / "grid.png"
    assert cli(["sample", "vae", "-n", "9", "--label", "3", "--seed", "1", "-o", str(png),
                "--storage", storage.uri]) == 0
    assert Image.open(io.BytesIO(png.read_bytes())).size == (3 * 10 + 2, 3 * 10 + 2)
    txt = tmp_path / "out.txt"
    assert cli(["sample", "markov", "-n", "2", "--prompt", "KING", "--max-tokens", "20", "-o", str(txt),
                "--storage", storage.uri]) == 0
    assert txt.read_text().count("KING") >= 2


def test_sample_rejects_fields_that_do_not_apply(trained, storage, capsys):
    assert cli(["sample", "vae", "--prompt", "hi", "-o", "x.png", "--storage", storage.uri]) == 2
    assert "does not apply" in capsys.readouterr().err
    assert cli(["sample", "vae", "--storage", storage.uri]) == 2
    assert "-o FILE.png" in capsys.readouterr().err
    assert cli(["sample", "nope", "--storage", storage.uri]) == 2
    assert "no model named" in capsys.readouterr().err


def test_eval_stores_the_heldout_nll(trained, storage, capsys):
    import math

    from genray.cluster.registry import Registry

    assert cli(["eval", "markov", "--storage", storage.uri]) == 0
    assert "held-out NLL" in capsys.readouterr().out
    rec = Registry(storage).record("markov")
    result = rec.metrics["eval"]
    assert result["rows"] > 1000 and result["nll_unit"] == "nats/char"
    assert result["heldout_nll"] < math.log(len(rec.config["vocab"]))
    assert result["split"] == "test" and "eval_val" not in rec.metrics
    assert cli(["eval", "markov", "--split", "val", "--storage", storage.uri]) == 0
    on_val = Registry(storage).record("markov").metrics["eval_val"]
    assert on_val["split"] == "val" and on_val["heldout_nll"] != result["heldout_nll"]
    assert cli(["eval", "vae", "--storage", storage.uri]) == 0
    vae = Registry(storage).record("vae").metrics["eval"]
    assert vae["heldout_bits_per_dim"] == pytest.approx(vae["heldout_nll"] / (64 * math.log(2)))
    assert cli(["eval", "ar", "--storage", storage.uri]) == 0
    ar = Registry(storage).record("ar").metrics["eval"]
    assert ar["nll_unit"] == "nats/value" and 0 < ar["forecast_mse"] < 1000  # last value: 1056


def test_eval_scores_image_samples_with_a_digit_fid(trained, storage, capsys):
    from genray.cluster.registry import Registry

    assert cli(["eval", "gan", "--storage", storage.uri]) == 0
    out = capsys.readouterr().out
    assert "digit-FID" in out and "held-out NLL" not in out  # a GAN has no likelihood
    gan = Registry(storage).record("gan").metrics["eval"]
    assert gan["fid"] > gan["fid_real_floor"] >= 0 and 0 <= gan["label_accuracy"] <= 1
    # The classifier behind the distance is a registry model too, and recognises real digits.
    judge = Registry(storage).record("judge-digits")
    assert judge.kind == "classifier" and judge.metrics["val_accuracy"] > 0.9
    assert "judge-digits" not in Registry(storage).names(kind="generative")


def test_sample_writes_midi_and_series(trained, storage, tmp_path, capsys):
    from genray.models.codecs import music

    out = tmp_path / "tune.mid"
    assert cli(["sample", "chorale", "--max-tokens", "20", "--seed", "3", "-o", str(out),
                "--storage", storage.uri]) == 0
    assert music.from_midi(out.read_bytes())  # a readable MIDI file with notes
    capsys.readouterr()
    assert cli(["sample", "ar", "--prompt", "10, 20, 40, 80, 120, 100, 60, 30, 10, 5, 8, 25, 60, 110, 130, 90",
                "--max-tokens", "6", "--seed", "1", "--storage", storage.uri]) == 0
    assert len(capsys.readouterr().out.split()) == 6
    assert cli(["sample", "ar", "--prompt", "ten", "--storage", storage.uri]) == 2


def test_only_user_errors_become_one_line(storage, monkeypatch, capsys):
    """A ValueError from inside genray is a bug: it keeps its traceback instead of exit status 2."""
    from genray.cluster.registry import Registry

    def broken(self):
        raise ValueError("an internal defect")

    monkeypatch.setattr(Registry, "list", broken)
    with pytest.raises(ValueError, match="internal defect"):
        cli(["models", "--storage", storage.uri])
    assert cli(["train", "vae", "--set", "hidden=ten", "--dataset", "digits", "--storage", storage.uri]) == 2
    assert "hidden" in capsys.readouterr().err  # a bad setting is the user's: one line


def test_eval_and_attack_a_classifier(trained, storage, tmp_path, capsys):
    from genray.cluster.registry import Registry

    assert cli(["eval", "classifier", "--storage", storage.uri]) == 0
    assert "accuracy" in capsys.readouterr().out
    ev = Registry(storage).record("classifier").metrics["eval"]
    assert ev["accuracy"] > 0.9 and ev["nll_unit"] == "nats/label"
    png = tmp_path / "attack.png"
    assert cli(["attack", "classifier", "--method", "pgd", "--eps", "0.2", "--steps", "20", "-n", "128",
                "-o", str(png), "--storage", storage.uri]) == 0
    out = capsys.readouterr().out
    clean = float(out.split("clean accuracy ")[1].split()[0])
    robust = float(out.split("robust accuracy ")[1].split()[0])
    assert clean > 0.9 and robust < clean - 0.3, out
    assert Image.open(png).size == (16 * 10 + 2, 3 * 10 + 2)  # 16 columns, 3 rows of 8x8 tiles
    assert cli(["attack", "classifier", "--method", "pgd", "--eps", "2", "--storage", storage.uri]) == 2
    assert "eps must be in" in capsys.readouterr().err
    assert cli(["attack", "markov", "--eps", "0.1", "--storage", storage.uri]) == 2
    assert "takes no attack" in capsys.readouterr().err
    assert cli(["attack", "vae", "--eps", "2", "--norm", "l2", "--storage", storage.uri]) == 2
    assert "--target" in capsys.readouterr().err
    assert cli(["attack", "vae", "--eps", "3", "--norm", "l2", "--target", "3", "--steps", "20", "-n", "16",
                "-o", str(png), "--storage", storage.uri]) == 0
    assert "target rate" in capsys.readouterr().out
    assert Image.open(png).size == (16 * 10 + 2, 4 * 10 + 2)  # clean, adversarial, reconstruction, difference
    assert cli(["attack", "transformer", "--prompt", "ROMEO:", "--target-text", "the", "--suffix-len", "4",
                "--steps", "3", "--storage", storage.uri]) == 0
    assert "log P('the' | prompt)" in capsys.readouterr().out


def test_defend_detects_and_purifies(trained, storage, capsys):
    import re

    assert cli(["defend", "flow", "--method", "detect", "--eps", "0.2", "--steps", "10", "-n", "64",
                "--storage", storage.uri]) == 0
    out = capsys.readouterr().out
    assert float(re.search(r"noise\s+([\d.]+)", out).group(1)) > 0.95, out
    assert re.search(r"pgd-0.2\s+[\d.]+", out) and re.search(r"pgd-0.2-adaptive\s+[\d.]+", out), out
    assert cli(["defend", "vae", "--method", "purify", "--eps", "0.1", "--steps", "5", "-n", "32",
                "--storage", storage.uri]) == 0
    out = capsys.readouterr().out
    scores = {k: float(v) for k, v in re.findall(r"^\s+(\w+)\s+([\d.]+)$", out, re.M)}
    assert {"clean", "purified_clean", "nonadaptive", "adaptive_bpda", "adaptive_full"} <= set(scores), out
    assert scores["adaptive_full"] <= scores["nonadaptive"] + 0.1, out
    assert cli(["defend", "classifier", "--method", "detect", "--storage", storage.uri]) == 2
    assert "takes a vae or flow" in capsys.readouterr().err


def test_explain_writes_pictures_and_rejects_what_does_not_apply(trained, storage, tmp_path, capsys):
    png, html = tmp_path / "ig.png", tmp_path / "prompt.html"
    assert cli(["explain", "classifier", "--index", "0", "--index", "1", "--evaluate", "--storage", storage.uri]) == 0
    out = capsys.readouterr().out
    assert "deletion AUC" in out and "ig completeness delta" in out, out
    assert cli(["explain", "classifier", "--method", "occlusion", "--index", "3", "-o", str(png),
                "--storage", storage.uri]) == 0
    assert Image.open(png).size[1] >= 224
    # A PNG file as input: the picture just written is the wrong size, a digit from the validation split is not.
    from genray.cluster.datacache import trained_on
    from genray.cluster.registry import Registry
    from genray.models.codecs.images import to_png

    digit = tmp_path / "digit.png"
    digit.write_bytes(to_png(trained_on(Registry(storage).record("classifier"), "val", storage, limit=1)["image"][0]))
    assert cli(["explain", "classifier", "--input", str(digit), "--target", "3", "--storage", storage.uri]) == 0
    assert "class 3" in capsys.readouterr().out
    assert cli(["explain", "classifier", "--input", str(png), "--storage", storage.uri]) == 2
    assert "shape" in capsys.readouterr().err
    assert cli(["explain", "transformer", "--prompt", "ROMEO:", "-o", str(html), "--storage", storage.uri]) == 0
    assert "'R':" in capsys.readouterr().out and html.read_text().count("<span title=") == 6
    assert cli(["explain", "markov", "--method", "exact", "--prompt", "KING", "--storage", storage.uri]) == 0
    assert "'K':" in capsys.readouterr().out
    assert cli(["explain", "vae", "--method", "pdp", "--index", "0", "--index", "1", "--feature", "2",
                "--storage", storage.uri]) == 0
    assert "pdp of latent 2" in capsys.readouterr().out
    assert cli(["explain", "ar", "--series", "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18", "--storage",
                storage.uri]) == 0
    assert "lags (newest first)" in capsys.readouterr().out
    assert cli(["explain", "classifier", "--prompt", "x", "--storage", storage.uri]) == 2
    assert "prompt" in capsys.readouterr().err
    assert cli(["explain", "classifier", "--n-steps", "9999", "--index", "0", "--storage", storage.uri]) == 2
    assert "n_steps" in capsys.readouterr().err


def test_train_shows_a_progress_bar_and_keeps_ray_off_the_console(tmp_path):
    """`genray train` as a user runs it, on an embedded cluster of its own: the console holds the
    run's bar, the one-line result and where Ray's logs are, and none of Ray's own output."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    r = subprocess.run([sys.executable, "-m", "genray", "train", "transformer", "--name", "console", "--limit", "64",
                        "--epochs", "2", "--set", "n_layer=1", "--set", "n_embd=16", "--set", "n_head=2",
                        "--storage", str(tmp_path)], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = [line for line in r.stdout.splitlines() if line.strip()]
    assert lines[0].startswith("console") and "epoch 2/2" in lines[0] and "val " in lines[0]
    assert lines[1].startswith("published console@1: val_nll=") and len(lines) == 2
    assert r.stderr.count("Ray's logs: ") == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_inpaint_writes_the_masked_input_and_its_completions(trained, storage, tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "filled.png"
    assert cli(["inpaint", "vae", "--index", "5", "--mask", "bottom", "-n", "2", "--steps", "5", "-o", str(out),
                "--storage", storage.uri]) == 0
    assert "PSNR on the hidden pixels" in capsys.readouterr().out
    assert Image.open(out).size == (4 * 8 + 5 * 2, 8 + 2 * 2)  # masked input, 2 completions, the original
    drawn = tmp_path / "mask.png"
    Image.new("L", (8, 8), 255).save(drawn)  # hides everything
    assert cli(["inpaint", "flow", "--index", "5", "--mask", str(drawn), "--storage", storage.uri]) == 2
    assert "hide some pixels and leave some visible" in capsys.readouterr().err
    assert cli(["inpaint", "markov", "--index", "1", "--storage", storage.uri]) == 2
    assert "inpainting needs a model of the families ['flow', 'vae'], not a markov" in capsys.readouterr().err
    assert cli(["inpaint", "vae", "--storage", storage.uri]) == 2 and "--index" in capsys.readouterr().err


def test_inpaint_fills_a_text_gap_with_a_text_model(trained, storage, capsys):
    assert cli(["inpaint", "markov", "--text", "ROMEO: What ____ thou", "--candidates", "8",
                "--storage", storage.uri]) == 0
    lines = capsys.readouterr().out.splitlines()
    scores = [float(line.split()[0]) for line in lines]
    assert 1 <= len(lines) <= 5 and scores == sorted(scores, reverse=True)
    assert all(re.search(r"What \[.{4}\] thou", line, re.S) for line in lines)
    assert cli(["inpaint", "markov", "--text", "no gap here", "--storage", storage.uri]) == 2
    assert "underscores" in capsys.readouterr().err


def test_summarize_prints_each_aspect_of_a_text_file(trained, storage, tmp_path, capsys, monkeypatch):
    paper = tmp_path / "paper.txt"
    paper.write_text("Parsing is hard because language is ambiguous. Prior parsers fail on long sentences.\n\n"
                     "We propose a chart parser with learned pruning. Experiments show it improves accuracy.")
    assert cli(["summarize", "summarizer", str(paper), "--aspect", "all", "--max-sentences", "1",
                "--storage", storage.uri]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["challenge", "approach", "outcome"]
    assert all(line.split(": ", 1)[1] in paper.read_text() for line in lines)  # one whole sentence each
    monkeypatch.setattr("sys.stdin", io.StringIO(paper.read_text()))
    assert cli(["summarize", "lead", "-", "--max-sentences", "2", "--storage", storage.uri]) == 0
    assert capsys.readouterr().out.strip() == "Parsing is hard because language is ambiguous. Prior parsers fail " \
                                              "on long sentences."
    assert cli(["summarize", "abstractor", str(paper), "--max-tokens", "6", "--storage", storage.uri]) == 0
    assert 0 < len(capsys.readouterr().out.split()) <= 6
    assert cli(["summarize", "lead", str(paper), "--aspect", "method", "--storage", storage.uri]) == 2
    assert "--aspect" in capsys.readouterr().err
    assert cli(["summarize", "vae", str(paper), "--storage", storage.uri]) == 2
    assert "not a summarizer" in capsys.readouterr().err
    assert cli(["summarize", "lead", str(tmp_path / "missing.txt"), "--storage", storage.uri]) == 2


def test_style_with_a_style_network_of_the_registry(trained, storage, tmp_path, capsys):
    out = tmp_path / "net.png"
    assert cli(["style", "coffee", "--model", "brick-net", "--max-side", "24", "-o", str(out),
                "--storage", storage.uri]) == 0
    assert Image.open(out).size == (24, 16) and "content SSIM" in capsys.readouterr().out
    assert cli(["style", "coffee", "--storage", storage.uri]) == 2 and "--model" in capsys.readouterr().err
    assert cli(["style", "coffee", "--model", "vae", "--storage", storage.uri]) == 2
    assert "not a style network" in capsys.readouterr().err
