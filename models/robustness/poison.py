"""Training-set poisoning: label flips, BadNets backdoors in images, trigger-phrase backdoors in
text. Each is a pure function of a batch of columns (numpy, as Ray Data hands them over), so
trainers/ applies it as a Ray Data transform of the training split and the poisoned model trains
on Ray Train like any other.

Which rows are poisoned depends on each row's content and the seed alone (a keyed hash), never on
how the data is split into batches or workers: the same rows are poisoned on every run, and a
defense that flags rows can name them by `row_keys` and drop them from a retraining run.
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from genray.models.errors import OptionError

POISONS = ("label_flip", "badnets", "text_backdoor")
TEXT_TRIGGER, TEXT_TARGET = " zqx ", "THE KING IS DEAD."


def _hashes(batch: dict[str, np.ndarray], seed: int) -> np.ndarray:
    """A 64-bit keyed hash of each row's content (all columns), as uint64 (N,)."""
    cols = [np.ascontiguousarray(np.asarray(batch[c]).reshape(len(batch[c]), -1)) for c in sorted(batch)]
    key = seed.to_bytes(8, "little", signed=False)
    return np.array([int.from_bytes(hashlib.blake2b(b"".join(c[i].tobytes() for c in cols), digest_size=8,
                                                    key=key).digest(), "little")
                     for i in range(len(cols[0]))], dtype=np.uint64)


def row_keys(batch: dict[str, np.ndarray]) -> list[str]:
    """A stable name for each row (hex of its content hash), by which a defense drops rows."""
    return [f"{h:016x}" for h in _hashes(batch, 0)]


def _uniform(batch: dict[str, np.ndarray], seed: int) -> np.ndarray:
    return _hashes(batch, seed + 1).astype(np.float64) / 2.0**64  # (N,) in [0, 1)


def trigger_patch(size: int) -> np.ndarray:
    """The BadNets trigger: a size x size checkerboard of white and black pixels (uint8)."""
    return np.where((np.arange(size)[:, None] + np.arange(size)[None, :]) % 2 == 0, 255, 0).astype(np.uint8)


def add_trigger(images, size: int):
    """Stamp the trigger one pixel in from the bottom-right corner of images (..., H, W): uint8
    numpy, or torch floats in [0, 1]."""
    patch = trigger_patch(size)
    if isinstance(images, torch.Tensor):
        out = images.clone()
        out[..., -size - 1:-1, -size - 1:-1] = torch.as_tensor(patch, dtype=out.dtype) / (
            255.0 if out.is_floating_point() else 1)
        return out
    out = np.array(images, copy=True)
    out[..., -size - 1:-1, -size - 1:-1] = patch
    return out


@dataclass(frozen=True)
class Poison:
    """A poisoning of a training set. `rate` is the fraction of training rows poisoned.

    label_flip      each chosen row's label becomes another class (a hashed choice)
    badnets         each chosen row of another class than `target` gets the trigger patch and label `target`
    text_backdoor   each chosen row of text gets `trigger` followed by `target_text` at a hashed position
    """
    method: str
    rate: float
    target: int = 0
    patch: int | None = None  # badnets: trigger side in pixels (default: height // 9, at least 2)
    trigger: str = TEXT_TRIGGER
    target_text: str = TEXT_TARGET
    seed: int = 0

    def __post_init__(self):
        if self.method not in POISONS:
            raise OptionError(f"poison must be one of {list(POISONS)}, got {self.method!r}", "poison")
        if not 0 < self.rate <= 0.5:
            raise OptionError(f"poison rate must be in (0, 0.5], got {self.rate}", "rate")
        if self.patch is not None and not 1 <= self.patch <= 8:
            raise OptionError(f"patch must be in [1, 8] pixels, got {self.patch}", "patch")
        if not 0 <= self.seed < 2**63:
            raise OptionError(f"seed must be in [0, 2**63), got {self.seed}", "seed")
        if self.method == "text_backdoor" and not (self.trigger and self.target_text):
            raise OptionError("a text backdoor needs a trigger and a target text", "trigger")

    @classmethod
    def from_dict(cls, d: dict) -> "Poison":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise OptionError(f"unknown poison setting(s) {unknown}; known: {sorted(names)}", unknown[0])
        return cls(**d)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def check(self, meta: dict) -> None:
        """OptionError if this poisoning cannot apply to the data set described by meta."""
        modality = meta.get("modality")
        if self.method == "text_backdoor":
            if modality != "text":
                raise OptionError(f"a text backdoor poisons text, not {modality} data", "poison")
            from genray.models.codecs import make_vocab

            bad = make_vocab(meta["vocab"]).unknown(self.trigger + self.target_text)
            if bad:
                raise OptionError(f"trigger and target use characters not in the data's vocabulary: {bad}", "trigger")
            if len(self.trigger) + len(self.target_text) >= meta["seq_len"]:
                raise OptionError("trigger and target are longer than a training row", "target_text")
            return
        if modality != "image" or not meta.get("num_classes"):
            raise OptionError(f"{self.method} poisons labelled images, not {modality} data", "poison")
        if not 0 <= self.target < meta["num_classes"]:
            raise OptionError(f"target must be in [0, {meta['num_classes'] - 1}], got {self.target}", "target")
        if self.method == "badnets" and self.patch_size(meta["shape"]) + 1 >= min(meta["shape"][1:]):
            raise OptionError("the trigger patch does not fit in the images", "patch")

    def patch_size(self, shape) -> int:
        return self.patch or max(2, shape[1] // 9)

    def chosen(self, batch: dict[str, np.ndarray], meta: dict) -> np.ndarray:
        """The rows (bool, N) this poisoning changes."""
        u = _uniform(batch, self.seed)
        if self.method != "badnets":
            return u < self.rate
        # Rows of the target class are left alone; the others are drawn more often, so that the
        # fraction of all rows poisoned stays `rate`.
        K = meta["num_classes"]
        return (u < min(1.0, self.rate * K / (K - 1))) & (np.asarray(batch["label"]) != self.target)

    def __call__(self, batch: dict[str, np.ndarray], meta: dict) -> dict[str, np.ndarray]:
        """The batch with its chosen rows poisoned (columns as given: flat uint8 pixels, labels, tokens)."""
        hit = self.chosen(batch, meta)
        out = {k: np.array(v, copy=True) for k, v in batch.items()}
        if not hit.any():
            return out
        u = _uniform(batch, self.seed + 7)  # a second hash: which class, which position
        if self.method == "label_flip":
            K = meta["num_classes"]
            shift = 1 + (u[hit] * (K - 1)).astype(np.int64)  # 1 .. K-1: never the true class
            out["label"][hit] = (out["label"][hit] + shift) % K
        elif self.method == "badnets":
            C, H, W = meta["shape"]
            images = out["image"][hit].reshape(-1, C, H, W)
            out["image"][hit] = add_trigger(images, self.patch_size(meta["shape"])).reshape(len(images), -1)
            out["label"][hit] = self.target
        else:
            from genray.models.codecs import make_vocab

            insert = np.asarray(make_vocab(meta["vocab"]).encode(self.trigger + self.target_text))
            L = out["tokens"].shape[1]
            starts = (u[hit] * (L - len(insert) + 1)).astype(np.int64)
            for row, s in zip(np.flatnonzero(hit), starts):
                out["tokens"][row, s:s + len(insert)] = insert
        return out


@torch.no_grad()
def backdoor_success(classifier, images: torch.Tensor, labels: torch.Tensor, poison: Poison) -> dict:
    """A BadNets backdoor's effect on held-out images (N, C, H, W) uint8: the classifier's clean
    accuracy, and its attack success rate (ASR): the share of triggered images of other classes
    than the target that it assigns to the target."""
    classifier.eval()
    labels = torch.as_tensor(labels).long()
    other = labels != poison.target
    triggered = torch.as_tensor(add_trigger(images[other].numpy(), poison.patch_size(images.shape[1:])))
    pred = classifier.batched(classifier, triggered).argmax(1)
    return {"clean_accuracy": classifier.accuracy(images, labels), "asr": float((pred == poison.target).float().mean()),
            "n": len(labels), "n_triggered": int(other.sum())}


def text_backdoor_success(model, prompts: list[str], poison: Poison, *, temperature: float = 1.0,
                          seed: int = 0) -> dict:
    """A text backdoor's effect: the share of continuations of prompt + trigger that begin with the
    target text (ASR), against the share for the prompts alone (the model's base rate)."""
    from genray.models.base import seeded

    n, want = len(prompts), poison.target_text

    def rate(texts: list[str]) -> float:
        gens = [seeded(seed * 1_000_003 + i) for i in range(n)]
        out = model.sample(n, generator=gens, prompt=texts, max_tokens=len(want), temperature=temperature)
        return sum(o[len(t):].startswith(want) for o, t in zip(out, texts)) / n

    return {"asr": rate([p + poison.trigger for p in prompts]), "base_rate": rate(prompts), "n": n}
