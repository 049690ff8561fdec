"""The model contract on an accelerator: every family trains a few hundred steps, with its default
architecture and its presets' training settings, and samples on the given device, without Ray
(GPU machines here have PyTorch but no Ray). Prints, per family,
steps/s, the loss before and after, sampling time, and whether samples come back as the
modality's CPU types and match the same seeds' samples on the CPU.

    python benchmarks/gpu_check.py --export DIR        # here: data from genray's cache as .npy
    python benchmarks/gpu_check.py --data DIR [--device cuda] [--steps 300]
    python benchmarks/gpu_check.py --data DIR --fit-seconds 300   # and the GPU-profile transformer
    python benchmarks/gpu_check.py --smoke             # a few CPU steps on generated data, and one fit step

Every run but --export writes a JSON record (benchmarks/record.py; --results DIR, default
benchmarks/results) that docs/benchmarks.md is rendered from.

--fit-seconds trains the transformer of trainers/presets.py's "gpu" profile on Shakespeare, bf16
autocast, evaluating the whole validation split after every epoch and keeping the best (early
stopping), for at most that many seconds. It reports tokens/s and the fraction of the card's dense
bf16 peak (nanoGPT's FLOP count: 6 x parameters + attention), and the best validation NLL.
"""
from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.record import Record  # noqa: E402  (the standard library only: no Ray)
from genray.models import build, family_class, modalities, seeded  # noqa: E402
from genray.models.base import GenerativeModel  # noqa: E402
from genray.models.modalities.series import CONTEXT  # noqa: E402
from genray.models.weights import to_bytes  # noqa: E402
from genray.trainers.config import TrainConfig  # noqa: E402
from genray.trainers.presets import profile, training_config  # noqa: E402  (presets import no Ray)

TEXT, IMAGE = ("transformer", "rnn", "markov"), ("vae", "gan", "flow")
# Text batches of 32 rows, 4x the CPU preset's 8: a GPU step on 8 x 256 symbols leaves it idle.
TEXT_BATCH = 32
# Dense bf16 tensor-core peaks (FLOP/s) from the vendor's data sheets, by a substring of the card's name.
BF16_PEAK = (("H200", 989e12), ("H100 PCIe", 756e12), ("H100", 989e12), ("A100", 312e12), ("L4", 121e12))


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


def bf16_peak(device: str) -> float | None:
    if device != "cuda":
        return None
    name = torch.cuda.get_device_name()
    return next((peak for key, peak in BF16_PEAK if key in name), None)


def full_nll(model: GenerativeModel, rows: torch.Tensor, device: str, chunk: int = 256) -> float:
    """Nats per symbol over every validation row, in fp32."""
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(rows), chunk):
            nll, units = model.eval_nll({"tokens": rows[i:i + chunk].to(device)})
            total, count = total + nll, count + units
    return total / count


def fit(data: dict, device: str, seconds: float, target: float, out: str | None) -> dict:
    """The gpu profile's transformer, trained epoch by epoch until its budget, its time or its
    patience (3 epochs without a better validation NLL) runs out; the best epoch is what counts."""
    settings = profile("gpu", "transformer")
    meta = {"modality": "text", "vocab": data["vocab"]}
    model = build({**family_class("transformer").default_config(meta), **settings["model"], "family": "transformer"})
    tc = training_config("transformer", "text", settings["train"])
    model = model.to(device)
    train, val = data["text"]
    steps_per_epoch = len(train) // tc.batch_size
    opts = model.make_optimizers(tc.optimizer())
    scheds = tc.schedulers(opts, tc.epochs * steps_per_epoch)
    # nanoGPT's count leaves out position embeddings (rotary positions have none).
    n_params = sum(p.numel() for p in model.parameters()) - (model.wpe.weight.numel() if model.wpe is not None else 0)
    cfg = model.config()
    T = cfg["block_size"]
    flops_per_token = 6 * n_params + 12 * cfg["n_layer"] * cfg["n_embd"] * T
    peak = bf16_peak(device)
    amp = torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda")
    g = torch.Generator().manual_seed(tc.seed)
    history, best, train_s, tokens, stale, t_start = [], None, 0.0, 0, 0, time.perf_counter()
    print(f"fit: {n_params / 1e6:.2f}M parameters, {steps_per_epoch} steps of {tc.batch_size} x {T} per epoch",
          flush=True)
    for epoch in range(tc.epochs):
        model.train()
        order = torch.randperm(len(train), generator=g)
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for i in range(steps_per_epoch):
            batch = {"tokens": train[order[i * tc.batch_size:(i + 1) * tc.batch_size]].to(device, non_blocking=True)}
            with amp:
                model.train_step(batch, opts, max_grad_norm=tc.max_grad_norm)
            for s in scheds:
                s.step()
        if device == "cuda":
            torch.cuda.synchronize()
        epoch_s = time.perf_counter() - t0
        train_s += epoch_s
        epoch_tokens = steps_per_epoch * tc.batch_size * min(T, train.shape[1] - 1)
        tokens += epoch_tokens
        model.eval()
        nll = full_nll(model, val, device)
        row = {"epoch": epoch + 1, "val_nll": nll, "train_s": train_s, "wall_s": time.perf_counter() - t_start,
               "tokens_per_s": tokens / train_s, "epoch_tokens_per_s": epoch_tokens / epoch_s}
        history.append(row)
        print(row, flush=True)
        if best is None or nll < best["val_nll"]:
            best, stale = row, 0
            if out:
                with open(f"{out}/gpu-transformer.safetensors", "wb") as f:
                    f.write(to_bytes(model))
                with open(f"{out}/gpu-transformer.json", "w") as f:
                    json.dump(model.config(), f)
        else:
            stale += 1
        if out:
            with open(f"{out}/fit.json", "w") as f:
                json.dump({"history": history, "best": best}, f, indent=2)
        if stale >= 3 or time.perf_counter() - t_start > seconds:
            break
    rate = tokens / train_s
    reached = next((r for r in history if r["val_nll"] <= target), None)
    sample = model.sample(1, generator=[seeded(0)], prompt=data["prompt"], max_tokens=200, temperature=0.8)[0]
    return {"params": n_params, "config": cfg, "train": tc.to_dict(), "tokens_per_s": rate,
            "model_flops_per_s": rate * flops_per_token, "bf16_peak_fraction": peak and rate * flops_per_token / peak,
            "best": best, "target": target, "reached_target_at_s": reached and reached["wall_s"],
            "epochs_run": len(history), "sample": sample}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--export")
    ap.add_argument("--data")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--smoke", action="store_true", help="3 CPU steps per family on generated data")
    ap.add_argument("--json", help="also write the rows to this file")
    ap.add_argument("--fit-seconds", type=float, default=0,
                    help="first train the gpu profile's transformer for at most this long (0: skip)")
    ap.add_argument("--target", type=float, default=1.15, help="the validation NLL (nats/char) --fit-seconds aims at")
    ap.add_argument("--out", help="where --fit-seconds writes its history and best weights")
    ap.add_argument("--results", default=None, help="where the JSON record goes (default benchmarks/results)")
    args = ap.parse_args()
    if args.export:
        export(args.export)
        return 0
    out = args.results
    if args.smoke:  # the fit too, for one epoch (a single step on the generated rows)
        args.device, args.steps, args.data, args.fit_seconds = "cpu", 3, None, 1e-3
        # A smoke run's record is scratch, never benchmarks/results/.
        out = tempfile.mkdtemp(prefix="genray-gpu-check-smoke-")
        atexit.register(shutil.rmtree, out, ignore_errors=True)
    # Training draws from seed 0; every family samples with seeds 0..7.
    rec = Record("gpu_check", None, args, seeds=list(range(8)), out_dir=out)
    data = load(args.data)
    torch.manual_seed(0)
    rows = []
    print(f"torch {torch.__version__}, device {args.device}"
          + (f" ({torch.cuda.get_device_name()})" if args.device == "cuda" else ""), flush=True)
    rec.figure("torch", torch.__version__)
    rec.figure("device", torch.cuda.get_device_name() if args.device == "cuda" else args.device)
    if args.fit_seconds:
        result = fit(data, args.device, args.fit_seconds, args.target, args.out)
        print(json.dumps(result, indent=2), flush=True)
        rec.figure("fit", result)
        rec.target("gpu-profile transformer: best validation NLL (nats/char)", result["best"]["val_nll"], "<=",
                   args.target)
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
    nll = lambda v: f"{v:.4f}" if v is not None else "-"  # noqa: E731
    for r in rows:
        print(f"{r['family']:<12}{r['steps_per_s']:>9.1f}{nll(r['val_nll_before']):>16}{nll(r['val_nll_after']):>10}  "
              f"{str(r['nll_unit']):<12}{r['sample_8_s']:>13.3f}  {str(r['samples_on_cpu']):<9}  {r['same_as_cpu']}")
    rec.table("families", f"The model contract on {args.device}: {args.steps} training steps per family (one for "
              "count-based families), then 8 samples",
              ["family", "steps/s", "val NLL before", "after", "unit", "sample 8 (s)", "cpu types", "same as cpu"],
              [[r["family"], f"{r['steps_per_s']:.1f}", nll(r["val_nll_before"]), nll(r["val_nll_after"]),
                str(r["nll_unit"]), f"{r['sample_8_s']:.3f}", r["samples_on_cpu"], r["same_as_cpu"]] for r in rows])
    rec.figure("checks", rows)  # every figure of every family, the last training loss too
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    failed = [r["family"] for r in rows if not r["samples_on_cpu"]]
    if failed:
        print(f"samples not returned as CPU objects of the modality's type: {failed}")
    rec.target("families whose samples come back as CPU objects of the modality's type", len(rows) - len(failed),
               "==", len(rows))
    rec.save()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
