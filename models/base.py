"""The contract every generative family keeps, and the family registry.

One training loop (trainers/loop.py) and one serving path (services/) drive every
family through this interface, so a family that needs something new changes the
contract here, never the loop.
"""
from __future__ import annotations

import importlib
import math
from typing import Any, Callable, ClassVar, Sequence

import torch
from torch import nn

_FAMILIES: dict[str, type["GenerativeModel"]] = {}

AllReduce = Callable[[torch.Tensor], None]  # sums a tensor in place across workers


def register(cls: type["GenerativeModel"]) -> type["GenerativeModel"]:
    """Class decorator that makes a family constructible by name."""
    _FAMILIES[cls.family] = cls
    return cls


def _load_families() -> None:
    importlib.import_module("models.families")  # importing registers every family


def family_class(name: str) -> type["GenerativeModel"]:
    _load_families()
    try:
        return _FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r}; known: {sorted(_FAMILIES)}") from None


def family_names() -> list[str]:
    _load_families()
    return sorted(_FAMILIES)


def build(config: dict) -> "GenerativeModel":
    """Rebuild a model from the JSON config saved beside its weights."""
    return family_class(config["family"]).from_config(config)


class GenerativeModel(nn.Module):
    family: ClassVar[str]
    modality: ClassVar[str]  # "image" | "text" | "music" | "series"; the default of modality_of()
    modalities: ClassVar[tuple[str, ...]] = ()  # every modality the family models, if more than one
    # Request fields that apply to this family's sample(); the rest are rejected by services.
    sample_options: ClassVar[frozenset[str]] = frozenset()
    nll_unit: ClassVar[str | None] = "nats"  # the unit eval_nll() counts; None: no likelihood (GAN)
    # Keyword arguments for DistributedDataParallel, e.g. find_unused_parameters for a family whose
    # forward passes use different parameter subsets.
    ddp_options: ClassVar[dict] = {}
    max_grad_norm: float | None = None  # train_step clips the gradient norm to this, if set

    # ---- construction -------------------------------------------------------------
    @classmethod
    def from_config(cls, config: dict) -> "GenerativeModel":
        return cls(**{k: v for k, v in config.items() if k != "family"})

    def config(self) -> dict:
        """JSON-serialisable constructor arguments, plus the family name."""
        raise NotImplementedError

    @classmethod
    def default_config(cls, meta: dict) -> dict:
        """Constructor arguments for a data set described by `meta` (vocab, image shape, ...)."""
        raise NotImplementedError

    @classmethod
    def modality_of(cls, config: dict) -> str:
        """The modality a saved config models (a family may model several)."""
        return cls.modality

    @classmethod
    def supports(cls, modality: str) -> bool:
        return modality in (cls.modalities or (cls.modality,))

    # ---- training -----------------------------------------------------------------
    def make_optimizers(self, lr: float | None = None) -> list[torch.optim.Optimizer]:
        params = [p for p in self.parameters() if p.requires_grad]
        return [torch.optim.AdamW(params, lr=lr or 1e-3)] if params else []

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Training objective on a batch: {"loss": scalar to minimise, **metrics}."""
        raise NotImplementedError

    def train_step(
        self,
        batch: dict[str, torch.Tensor],
        optimizers: Sequence[torch.optim.Optimizer],
        forward: Callable[..., dict] | None = None,
    ) -> dict[str, float]:
        """One optimisation step. `forward` is this module's forward, possibly wrapped
        for data parallelism (DDP); calling it rather than self keeps gradients in sync."""
        out = (forward or self)(batch)
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        if self.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.parameters(), self.max_grad_norm)
        for opt in optimizers:
            opt.step()
        return {k: float(v.detach()) for k, v in out.items()}

    def reduce_statistics(self, all_reduce: AllReduce) -> None:
        """Called at each epoch end on every worker. Count-based families sum the sufficient
        statistics gathered by train_step across workers here; gradient families do nothing."""

    @torch.no_grad()
    def eval_nll(self, batch: dict[str, torch.Tensor]) -> tuple[float, int] | None:
        """(total negative log-likelihood in nats, number of units) over a batch, so that
        workers can sum both and report nats per unit; None for a family without a likelihood."""
        raise NotImplementedError

    def heldout_nll(self, batch: dict[str, torch.Tensor]) -> tuple[float, int] | None:
        """What `genray eval` reports: eval_nll, or a tighter but costlier estimate where the
        family has one (the VAE's importance-weighted bound)."""
        return self.eval_nll(batch)

    # ---- generation ---------------------------------------------------------------
    def sample(self, n: int, **options: Any) -> list:
        """n samples. Options are per-row lists or scalars; `generator` is one torch.Generator
        or one per row, so a row's randomness does not depend on the rows batched with it."""
        raise NotImplementedError

    def log_prob(self, x: Any) -> torch.Tensor:
        """Exact log-likelihood per example, or a lower bound where that is all there is."""
        raise NotImplementedError


class LatentImageModel(GenerativeModel):
    """A class-conditional image family with a latent code (VAE, GAN): the same constructor
    arguments saved the same way, and two stride-2 stages, so height and width divide by 4."""
    modality = "image"
    sample_options = frozenset({"label", "seed"})

    def __init__(self, shape: list[int], num_classes: int, latent_dim: int, hidden: int, lr: float):
        super().__init__()
        C, H, W = shape
        if H % 4 or W % 4:
            raise ValueError(f"image height and width must be multiples of 4, got {H}x{W}")
        self.shape, self.num_classes, self.latent_dim = [C, H, W], num_classes, latent_dim
        self.hparams = dict(hidden=hidden, lr=lr)

    def config(self) -> dict:
        return {"family": self.family, "shape": self.shape, "num_classes": self.num_classes,
                "latent_dim": self.latent_dim, **self.hparams}

    @classmethod
    def default_config(cls, meta: dict) -> dict:
        return {"family": cls.family, "shape": meta["shape"], "num_classes": meta.get("num_classes", 0)}


# ---- helpers for per-row sampling ---------------------------------------------------------

def per_row(value: Any, n: int) -> list:
    """Expand a scalar option to n rows; check a list has exactly n."""
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"expected {n} per-row values, got {len(value)}")
        return list(value)
    return [value] * n


def generators(generator: torch.Generator | Sequence[torch.Generator] | None, n: int) -> list[torch.Generator]:
    if generator is None:
        generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, ()).item()))
    return per_row(generator, n)


def seeded(seed: int | None) -> torch.Generator:
    g = torch.Generator()
    if seed is None:
        g.seed()
    else:
        g.manual_seed(seed)
    return g


def draw_categorical(probs: torch.Tensor, gens: Sequence[torch.Generator]) -> torch.Tensor:
    """One index per row of probs (B, V), by inverse CDF on a uniform from that row's generator."""
    u = torch.stack([torch.rand((), generator=g, dtype=torch.float64) for g in gens])  # (B,)
    cdf = probs.double().cumsum(-1)
    u = u * cdf[:, -1]
    idx = torch.searchsorted(cdf, u.unsqueeze(1)).squeeze(1)
    return idx.clamp_(max=probs.shape[1] - 1)


def draw_normal(shape: Sequence[int], gens: Sequence[torch.Generator]) -> torch.Tensor:
    """Standard normal noise (B, *shape), each row from its own generator."""
    return torch.stack([torch.randn(tuple(shape), generator=g) for g in gens])


def one_hot(labels: torch.Tensor | None, num_classes: int, n: int) -> torch.Tensor:
    """(n, num_classes) float one-hot rows; (n, 0) for an unconditional model."""
    if not num_classes:
        return torch.zeros(n, 0)
    return torch.nn.functional.one_hot(labels.long(), num_classes).float()


def sample_labels(label: Any, n: int, num_classes: int, gens: Sequence[torch.Generator]) -> torch.Tensor | None:
    """Per-row class labels for a class-conditional sampler: a None label is drawn uniformly
    from that row's generator; None for an unconditional model."""
    if not num_classes:
        return None
    labels = per_row(label, n)
    for i, lab in enumerate(labels):
        if lab is None:
            labels[i] = int(torch.randint(num_classes, (), generator=gens[i]))
        elif not 0 <= int(lab) < num_classes:
            raise ValueError(f"label must be in [0, {num_classes - 1}], got {lab}")
    return torch.tensor(labels)


def top_k_filter(logits: torch.Tensor, k: Sequence[int | None]) -> torch.Tensor:
    """Keep each row's k largest logits (B, V); a None or 0 k keeps them all."""
    V = logits.shape[-1]
    ks = torch.tensor([V if not kk else min(int(kk), V) for kk in k], device=logits.device)
    if bool((ks == V).all()):
        return logits
    kth = logits.sort(dim=-1, descending=True).values.gather(1, (ks - 1).unsqueeze(1))  # (B, 1)
    return logits.masked_fill(logits < kth, -math.inf)


def sample_sequences(model, n: int, *, prompt: Any = None, max_tokens: Any = 256, temperature: Any = 1.0,
                     top_k: Any = None, generator=None, **generate_kwargs) -> list:
    """Per-row sampling shared by the autoregressive symbol families: rows with prompts of
    equal length run as one batch through model.generate(idx (b, T), steps, temperature (b,),
    top_k, gens) -> (b, T + steps). Each sample is its prompt plus its continuation (a string
    of text, or a list of events cut at the end of the piece)."""
    vocab = model.vocab
    prompts = per_row(prompt, n)
    steps, temps, ks = per_row(max_tokens, n), per_row(temperature, n), per_row(top_k, n)
    gens = generators(generator, n)
    ids = [vocab.encode(p if p else vocab.start) for p in prompts]
    groups: dict[int, list[int]] = {}
    for i, t in enumerate(ids):
        groups.setdefault(len(t), []).append(i)
    out: list = [None] * n
    for rows in groups.values():
        idx = torch.stack([torch.as_tensor(ids[i]) for i in rows])  # (b, T)
        T = idx.shape[1]
        res = model.generate(idx, max(int(steps[i]) for i in rows),
                             torch.tensor([float(temps[i]) for i in rows], dtype=torch.float64),
                             [ks[i] for i in rows], [gens[i] for i in rows], **generate_kwargs)
        for j, i in enumerate(rows):
            new = vocab.decode(res[j, T: T + int(steps[i])])
            if vocab.stop is not None and vocab.stop in new:
                new = new[: new.index(vocab.stop)]
            out[i] = vocab.decode(ids[i] if prompts[i] else []) + new
    return out


class SequenceModel(GenerativeModel):
    """A family over a symbol vocabulary: characters (text) or note events (music). The saved
    vocabulary says which: a string of characters, or a list of event tokens."""
    modality = "text"
    modalities = ("text", "music")
    sample_options = frozenset({"prompt", "max_tokens", "temperature", "top_k", "seed"})
    UNITS: ClassVar[dict[str, str]] = {"text": "nats/char", "music": "nats/note"}
    nll_unit = "nats/char"

    def _set_vocab(self, vocab: str | list[str]) -> None:
        from models.codecs import make_vocab

        self.vocab = make_vocab(vocab)
        self.modality = self.modality_of({"vocab": vocab})
        self.nll_unit = self.UNITS[self.modality]

    @classmethod
    def modality_of(cls, config: dict) -> str:
        return "text" if isinstance(config.get("vocab", ""), str) else "music"

    def tokens(self, x) -> torch.Tensor:
        """Rows of ids (B, L) from a tensor, a text or a list of events."""
        return x if isinstance(x, torch.Tensor) else torch.as_tensor(self.vocab.encode(x))[None]

    @torch.no_grad()
    def sample(self, n: int, **options: Any) -> list:
        return sample_sequences(self, n, **options)
