"""The model contract on an accelerator: every family trains a few hundred steps, with its default
architecture and its presets' training settings, and samples on the given device, without Ray
(GPU machines here have PyTorch but no Ray). Prints, per family,
steps/s, the loss before and after, sampling time, and whether samples come back as the
modality's CPU types and match the same seeds' samples on the CPU.

    python benchmarks/gpu_check.py --export DIR        # here: data from genray's cache as .npy
    python benchmarks/gpu_check.py --data DIR [--device cuda] [--steps 300]
    python benchmarks/gpu_check.py --smoke             # a few CPU steps on generated data
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from genray.models import build, family_class, modalities, seeded  # noqa: E402
from genray.models.base import GenerativeModel  # noqa: E402
from genray.models.modalities.series import CONTEXT  # noqa: E402
from genray.trainers.config import TrainConfig  # noqa: E402
from genray.trainers.presets import training_config  # noqa: E402  (presets import no Ray)

TEXT, IMAGE = ("transformer", "rnn", "markov"), ("vae", "gan", "flow")
# Text batches of 32 rows, 4x the CPU preset's 8: a GPU step on 8 x 256 symbols leaves it idle.
TEXT_BATCH = 32


def preset(family: str, meta: dict, batch_size: int | None = None) -> tuple[GenerativeModel, TrainConfig]:
    """The family's default architecture for the data set, and its preset training settings."""
    model = build({**family_class(family).default_config(meta), "family": family})
    return model, training_config(family, meta["modality"], {"batch_size": batch_size})


def export(out: str) -> None:
    from genray.cluster.storage import Storage
    from genray.trainers import datasets

    os.makedirs(out, exist_ok=True)
    storage = Storage()
    text = datasets.prepare("shakespeare", storage)
    for split in ("train", "val"):
        tokens = datasets.local_arrays(text, split, storage)["tokens"].numpy()
        np.save(f"{out}/text_{split}.npy", tokens.astype(np.uint8))
        images = datasets.local_arrays(datasets.prepare("mnist", storage), split, storage)
        np.save(f"{out}/mnist_{split}.npy", images["image"].numpy())
        np.save(f"{out}/mnist_{split}_labels.npy", images["label"].numpy())
    with open(f"{out}/text_vocab.json", "w") as f:
        json.dump(text["vocab"], f)
    print(f"wrote {out}")


def load(data: str | None) -> dict:
    if data is None:  # generated stand-ins, for --smoke
        g = torch.Generator().manual_seed(0)
        return {"vocab": "abcdefgh \n", "prompt": "bad", "text": (torch.randint(0, 10, (64, 65), generator=g),) * 2,
                "images": (torch.randint(0, 256, (64, 1, 8, 8), generator=g, dtype=torch.uint8),) * 2,
                "labels": (torch.randint(0, 10, (64,), generator=g),) * 2}
    with open(f"{data}/text_vocab.json") as f:
        vocab = json.load(f)
    arr = lambda name: torch.from_numpy(np.load(f"{data}/{name}.npy"))  # noqa: E731
    return {"vocab": vocab, "prompt": "ROMEO:", "text": (arr("text_train").long(), arr("text_val").long()),
            "images": (arr("mnist_train"), arr("mnist_val")),
            "labels": (arr("mnist_train_labels").long(), arr("mnist_val_labels").long())}


def check(model: GenerativeModel, tc: TrainConfig, train: dict, val: dict, steps: int, device: str,
          sample_opts: dict) -> dict:
    model = model.to(device)
    opts, bs = model.make_optimizers(tc.optimizer()), tc.batch_size
    to = lambda b: {k: v.to(device) for k, v in b.items()}  # noqa: E731
    n = len(next(iter(train.values())))
    g = torch.Generator().manual_seed(0)
    val_batch = to({k: v[:256] for k, v in val.items()})
    before = model.eval_nll(val_batch) if model.nll_unit else None
    model.train()
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else torch.autocast("cpu", enabled=False)
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps if opts else 1):
        idx = torch.randint(0, n, (bs,), generator=g) if opts else torch.arange(n)
        with amp:
            out = model.train_step(to({k: v[idx] for k, v in train.items()}), opts, max_grad_norm=tc.max_grad_norm)
    model.reduce_statistics(lambda t: None)
    if device == "cuda":
        torch.cuda.synchronize()
    train_s = time.perf_counter() - t0
    model.eval()
    after = model.eval_nll(val_batch) if model.nll_unit else None
    t0 = time.perf_counter()
    samples = model.sample(8, generator=[seeded(i) for i in range(8)], **sample_opts)
    sample_s = time.perf_counter() - t0
    kind = {"text": str, "music": list, "image": torch.Tensor, "series": list}[model.modality]
    on_cpu = all(isinstance(s, kind) and (not isinstance(s, torch.Tensor) or s.device.type == "cpu") for s in samples)
    cpu_samples = model.cpu().sample(8, generator=[seeded(i) for i in range(8)], **sample_opts)
    same = all((torch.allclose(a, b, atol=1e-3) if isinstance(a, torch.Tensor) else a == b)
               for a, b in zip(samples, cpu_samples))
    row = {"family": model.family, "device": device, "steps": steps if opts else 1,
           "steps_per_s": (steps if opts else 1) / train_s, "loss_last": out.get("loss"),
           "val_nll_before": before and before[0] / before[1], "val_nll_after": after and after[0] / after[1],
           "nll_unit": model.nll_unit, "sample_8_s": sample_s, "samples_on_cpu": on_cpu, "same_as_cpu": same}
    encode = modalities.get(model.modality).to_json
    encode(samples[0], {})  # the server's encoding accepts what sample() returned
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--export")
    ap.add_argument("--data")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--smoke", action="store_true", help="3 CPU steps per family on generated data")
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args()
    if args.export:
        export(args.export)
        return 0
    if args.smoke:
        args.device, args.steps, args.data = "cpu", 3, None
    data = load(args.data)
    torch.manual_seed(0)
    rows = []
    print(f"torch {torch.__version__}, device {args.device}"
          + (f" ({torch.cuda.get_device_name()})" if args.device == "cuda" else ""), flush=True)
    for family in TEXT:
        train, val = ({"tokens": t} for t in data["text"])
        m, tc = preset(family, {"modality": "text", "vocab": data["vocab"]}, TEXT_BATCH)
        rows.append(check(m, tc, train, val, args.steps, args.device, {"prompt": data["prompt"], "max_tokens": 64}))
        print(rows[-1], flush=True)
    shape = list(data["images"][0].shape[1:])
    for family in IMAGE:
        train, val = ({"image": x, "label": y} for x, y in zip(data["images"], data["labels"]))
        m, tc = preset(family, {"modality": "image", "shape": shape, "num_classes": 10})
        rows.append(check(m, tc, train, val, args.steps, args.device,
                          {"label": 3} if "label" in m.sample_options else {}))
        print(rows[-1], flush=True)
    t = torch.arange(400, dtype=torch.float64)
    series = torch.sin(t / 5)[None] + 0.1 * torch.randn(1, 400, dtype=torch.float64)
    batch = {"series": series, "first": torch.zeros(1, dtype=torch.long)}
    m, tc = preset("ar", {"modality": "series", "context": CONTEXT})
    rows.append(check(m, tc, batch, batch, args.steps, args.device,
                      {"prompt": series[0, -16:].tolist(), "max_tokens": 16}))
    print(rows[-1], flush=True)
    print(f"\n{'family':<12}{'steps/s':>9}{'val NLL before':>16}{'after':>10}  unit        {'sample 8 (s)':>13}"
          f"  cpu types  same as cpu")
    for r in rows:
        nll = lambda v: f"{v:.4f}" if v is not None else "-"  # noqa: E731
        print(f"{r['family']:<12}{r['steps_per_s']:>9.1f}{nll(r['val_nll_before']):>16}{nll(r['val_nll_after']):>10}  "
              f"{str(r['nll_unit']):<12}{r['sample_8_s']:>13.3f}  {str(r['samples_on_cpu']):<9}  {r['same_as_cpu']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    failed = [r["family"] for r in rows if not r["samples_on_cpu"]]
    if failed:
        print(f"samples not returned as CPU objects of the modality's type: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
