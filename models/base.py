"""The contract every generative family keeps.

One training loop (trainers/loop.py) and one serving path (services/) drive every family
through this interface, so a family that needs something new changes the contract here, never
the loop. Families register by name in models/catalog.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Sequence

import torch

from genray.models.catalog import Configurable
from genray.models.errors import ConfigError, OptionError
from genray.models.optim import OptimizerSettings

AllReduce = Callable[[torch.Tensor], None]  # sums a tensor in place across workers
STRATEGIES = ("ddp", "fsdp", "tensor", "pipeline", "hybrid")


@dataclass(frozen=True)
class ParallelPlan:
    """How a model splits across workers, as names; trainers/strategies.py applies it.

    blocks: the ModuleList of repeated blocks (FSDP shards each one; pipeline stages take runs of
    them). tensor: per block, submodule -> "colwise" | "rowwise" (Megatron's pairs: a column-split
    layer feeds a row-split one, one all-reduce per pair). first, last: the modules before and
    after the blocks, which the first and last pipeline stages hold."""
    blocks: str = ""
    tensor: dict[str, str] = field(default_factory=dict)
    first: tuple[str, ...] = ()
    last: tuple[str, ...] = ()


class TrainableModel(Configurable):
    """What the one training loop needs of any model it trains: a generative family, or a
    classifier (kind "classifier")."""
    modalities: ClassVar[tuple[str, ...]] = ()  # every modality the family models, if more than one
    nll_unit: ClassVar[str | None] = "nats"  # the unit eval_nll() counts; None: no likelihood (GAN)
    # Keyword arguments for DistributedDataParallel, e.g. find_unused_parameters for a family whose
    # forward passes use different parameter subsets.
    ddp_options: ClassVar[dict] = {}
    # The training strategies (STRATEGIES) this family supports. "ddp" all-reduces gradients, or,
    # for a count-based family, sums its counts; "fsdp" needs train_step to call the forward it is
    # given (as the one below does); the model-parallel ones need a parallel_plan().
    strategies: ClassVar[tuple[str, ...]] = ("ddp", "fsdp")

    @classmethod
    def default_config(cls, meta: dict) -> dict:
        """Architecture for a data set described by `meta` (vocab, image shape, ...)."""
        raise NotImplementedError

    @classmethod
    def supports(cls, modality: str) -> bool:
        return modality in (cls.modalities or (cls.modality,))

    @classmethod
    def search_space(cls, meta: dict) -> dict[str, tuple]:
        """The default hyperparameter search space for data described by `meta`, as plain data:
        {name: ("uniform" | "loguniform", low, high) | ("int", low, high) | ("choice", [values])}.
        A name is an architecture setting (a constructor argument) or a training setting (a
        TrainConfig field, e.g. lr); trainers/ turns the space into Ray Tune's domains."""
        return {"lr": ("loguniform", 3e-4, 1e-2)}

    def parallel_plan(self) -> ParallelPlan:
        return ParallelPlan()

    # ---- pipeline parallelism: the forward cut into stages ----------------------------
    def pipeline_inputs(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets) of a batch, each split along dim 0 into microbatches."""
        raise NotImplementedError(f"{self.family} models have no pipeline stages")

    def stage_forward(self, x: torch.Tensor, blocks: Sequence[torch.nn.Module], first: bool, last: bool):
        """One stage's part of the forward: the first stage takes the inputs, the last returns
        the outputs that pipeline_nll scores."""
        raise NotImplementedError(f"{self.family} models have no pipeline stages")

    def pipeline_nll(self, outputs: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        raise NotImplementedError(f"{self.family} models have no pipeline stages")

    # ---- training -----------------------------------------------------------------
    def make_optimizers(self, settings: OptimizerSettings) -> list[torch.optim.Optimizer]:
        """The family's optimizers (none for count-based families), with the training config's numbers."""
        params = [p for p in self.parameters() if p.requires_grad]
        return [settings.adamw(params)] if params else []

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Training objective on a batch: {"loss": scalar to minimise, **metrics}."""
        raise NotImplementedError

    def train_step(
        self,
        batch: dict[str, torch.Tensor],
        optimizers: Sequence[torch.optim.Optimizer],
        forward: Callable[..., dict] | None = None,
        max_grad_norm: float | None = None,
        scaler: torch.amp.GradScaler | None = None,
    ) -> dict[str, float]:
        """One optimisation step. `forward` is this module's forward, possibly wrapped for a
        training strategy (DDP, FSDP) or autocast; calling it rather than self keeps gradients in
        sync. The gradient norm is clipped to max_grad_norm, if set; with fp16, `scaler` scales
        the loss."""
        out = (forward or self)(batch)
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        (scaler.scale(out["loss"]) if scaler else out["loss"]).backward()
        if scaler:
            for opt in optimizers:
                scaler.unscale_(opt)
        if max_grad_norm:
            clip_grad_norm(self.parameters(), max_grad_norm)
        for opt in optimizers:
            scaler.step(opt) if scaler else opt.step()
        if scaler:
            scaler.update()
        return {k: float(v.detach()) for k, v in out.items()}

    def reduce_statistics(self, all_reduce: AllReduce) -> None:
        """Called at each epoch end on every worker. Count-based families sum the sufficient
        statistics gathered by train_step across workers here; gradient families do nothing."""

    @torch.no_grad()
    def eval_nll(self, batch: dict[str, torch.Tensor]) -> tuple[float, int] | None:
        """(total negative log-likelihood in nats, number of units) over a batch, so that
        workers can sum both and report nats per unit; None for a family without a likelihood.
        For a classifier, the cross-entropy of the labels."""
        raise NotImplementedError

    def heldout_nll(self, batch: dict[str, torch.Tensor]) -> tuple[float, int] | None:
        """What `genray eval` reports: eval_nll, or a tighter but costlier estimate where the
        family has one (the VAE's importance-weighted bound)."""
        return self.eval_nll(batch)

    @property
    def device(self) -> torch.device:
        for t in self.parameters():
            return t.device
        for t in self.buffers():
            return t.device
        return torch.device("cpu")


class GenerativeModel(TrainableModel):
    kind = "generative"
    # Sampling options this family's sample() takes; with n and seed, the request fields that apply.
    sample_options: ClassVar[frozenset[str]] = frozenset()
    streams: ClassVar[bool] = False  # stream() yields samples as they are decoded

    def log_prob(self, x: Any) -> torch.Tensor:
        """Exact log-likelihood per example, or a lower bound where that is all there is. Not
        under no_grad: attacks and attributions differentiate it."""
        raise NotImplementedError

    # ---- generation ---------------------------------------------------------------
    def sample(self, n: int, *, generator: torch.Generator | Sequence[torch.Generator] | None = None,
               cancel: Callable[[], bool] | None = None, **options: Any) -> list:
        """A list of n samples, one per row, of the modality's type: a string (text), a list of
        events (music), a list of floats (series), a (C, H, W) float tensor in [0, 1] (image).

        Options are per-row lists or scalars and must be among sample_options; `generator` is
        one torch.Generator or one per row, so a row's randomness does not depend on the rows
        batched with it. Families that decode step by step (streams) check `cancel()` at every
        step and raise Cancelled when it is true."""
        self._check_sample_options(options)
        extra = {"cancel": cancel} if cancel is not None and self.streams else {}
        with torch.no_grad():
            return list(self._sample(n, generators(generator, n), **options, **extra))

    def _check_sample_options(self, options: dict) -> None:
        unknown = sorted(set(options) - self.sample_options)
        if unknown:
            raise TypeError(f"{self.family} models take no sampling option(s) {unknown}; "
                            f"accepted: {sorted(self.sample_options)}")
        self.check_options(**options)

    def check_options(self, **options: Any) -> None:
        """Raise OptionError for sampling options this trained model cannot use. Called before
        sampling, and by the server before a request joins a batch, so that one caller's bad
        input never fails the requests batched with it."""

    def _sample(self, n: int, gens: list[torch.Generator], **options: Any) -> Sequence:
        raise NotImplementedError


class LatentImageModel(GenerativeModel):
    """A class-conditional image family with a latent code (VAE, GAN): the same constructor
    arguments, and two stride-2 stages, so height and width divide by 4."""
    modality = "image"
    sample_options = frozenset({"label"})

    def __init__(self, shape: list[int], num_classes: int, latent_dim: int, hidden: int):
        super().__init__()
        C, H, W = shape
        if H % 4 or W % 4:
            raise ConfigError(f"image height and width must be multiples of 4, got {H}x{W}")
        self.shape, self.num_classes, self.latent_dim, self.hidden = [C, H, W], num_classes, latent_dim, hidden

    @classmethod
    def default_config(cls, meta: dict) -> dict:
        return {"family": cls.family, "shape": meta["shape"], "num_classes": meta.get("num_classes", 0)}

    @classmethod
    def search_space(cls, meta: dict) -> dict[str, tuple]:
        return {"lr": ("loguniform", 5e-4, 1e-2), "latent_dim": ("choice", [8, 16, 32]),
                "hidden": ("choice", [16, 32, 64])}

    def check_options(self, label: Any = None, **_: Any) -> None:
        for lab in label if isinstance(label, (list, tuple)) else [label]:
            if lab is None:
                continue
            if not self.num_classes:
                raise OptionError("this model is not class-conditional", "label")
            if not 0 <= int(lab) < self.num_classes:
                raise OptionError(f"label must be in [0, {self.num_classes - 1}], got {lab}", "label")


def clip_grad_norm(parameters, max_norm: float) -> torch.Tensor:
    """Scale gradients so that their global norm is at most max_norm, as torch's clip_grad_norm_,
    for gradients that may be DTensors (sharded or split by a training strategy) mixed with
    plain ones: a DTensor's norm is of the whole tensor, not the worker's part."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.zeros(())
    norms = []
    for g in grads:
        n = torch.linalg.vector_norm(g, dtype=torch.float32)
        norms.append(n.full_tensor() if hasattr(n, "full_tensor") else n)
    total = torch.linalg.vector_norm(torch.stack(norms))
    coef = max_norm / (float(total) + 1e-6)  # one host synchronisation per step
    if coef < 1:
        for g in grads:
            g.mul_(coef)
    return total


# ---- helpers for per-row sampling ---------------------------------------------------------

def per_row(value: Any, n: int) -> list:
    """Expand a scalar option to n rows; check a list has exactly n."""
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise OptionError(f"expected {n} per-row values, got {len(value)}")
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
    """One index per row of probs (B, V), by inverse CDF on a uniform from that row's generator.
    Generators live on the CPU; the uniforms move to probs' device."""
    u = torch.stack([torch.rand((), generator=g, dtype=torch.float64) for g in gens]).to(probs.device)  # (B,)
    cdf = probs.double().cumsum(-1)
    u = u * cdf[:, -1]
    idx = torch.searchsorted(cdf, u.unsqueeze(1)).squeeze(1)
    return idx.clamp_(max=probs.shape[1] - 1)


def draw_normal(shape: Sequence[int], gens: Sequence[torch.Generator], device=None) -> torch.Tensor:
    """Standard normal noise (B, *shape), each row from its own (CPU) generator, on `device`."""
    return torch.stack([torch.randn(tuple(shape), generator=g) for g in gens]).to(device)


def one_hot(labels: torch.Tensor | None, num_classes: int, n: int, device=None) -> torch.Tensor:
    """(n, num_classes) float one-hot rows; (n, 0) for an unconditional model."""
    if not num_classes:
        return torch.zeros(n, 0, device=device)
    return torch.nn.functional.one_hot(labels.long(), num_classes).float().to(device)


def sample_labels(label: Any, n: int, num_classes: int, gens: Sequence[torch.Generator]) -> torch.Tensor | None:
    """Per-row class labels for a class-conditional sampler: a None label is drawn uniformly
    from that row's generator; None for an unconditional model."""
    if not num_classes:
        return None
    labels = per_row(label, n)  # checked by check_options
    for i, lab in enumerate(labels):
        if lab is None:
            labels[i] = int(torch.randint(num_classes, (), generator=gens[i]))
    return torch.tensor(labels)


class SequenceModel(GenerativeModel):
    """A family over a symbol vocabulary: characters (text) or note events (music). The saved
    vocabulary says which: a string of characters, or a list of event tokens."""
    modality = "text"
    modalities = ("text", "music")
    sample_options = frozenset({"prompt", "max_tokens", "temperature", "top_k", "top_p", "stop"})
    streams = True
    nll_unit = "nats/char"

    def _set_vocab(self, vocab: str | list[str]) -> None:
        from genray.models import modalities
        from genray.models.codecs import make_vocab

        self.vocab = make_vocab(vocab)
        self.modality = self.modality_of({"vocab": vocab})
        self.nll_unit = modalities.get(self.modality).nll_unit

    @classmethod
    def modality_of(cls, config: dict) -> str:
        return "text" if isinstance(config.get("vocab", ""), str) else "music"

    @classmethod
    def capability(cls, name: str, config: dict) -> tuple[str, ...]:
        # The suffix search works on characters: a text model's, not a music model's events.
        if name == "attacks" and cls.modality_of(config) != "text":
            return ()
        return super().capability(name, config)

    def tokens(self, x) -> torch.Tensor:
        """Rows of ids (B, L) from a tensor, a text or a list of events."""
        return x if isinstance(x, torch.Tensor) else torch.as_tensor(self.vocab.encode(x))[None].to(self.device)

    def check_options(self, prompt: Any = None, stop: Any = None, **_: Any) -> None:
        # One stop list for every row, or one per row (None where a row has none).
        if self.modality != "text" and any(stop if isinstance(stop, (list, tuple)) else [stop]):
            raise OptionError("stop sequences apply to text models; a piece of music ends by itself", "stop")
        for p in prompt if isinstance(prompt, (list, tuple)) else [prompt]:  # one prompt, or one per row
            bad = self.vocab.unknown(p) if p else []
            if bad:
                raise OptionError(f"prompt has symbols not in the model's vocabulary: {bad[:10]}", "prompt")

    def _sample(self, n: int, gens: list[torch.Generator], **options: Any) -> list:
        from genray.models.sampling import sample_sequences

        return sample_sequences(self, gens, **options)

    def stream(self, n: int, *, generator=None, **options: Any):
        """Like sample(), as the (row, new text or events) pairs decided at each step: the pieces
        of a row joined are its continuation, without its prompt."""
        from genray.models.sampling import stream_sequences

        self._check_sample_options(options)
        with torch.no_grad():
            yield from stream_sequences(self, generators(generator, n), **options)

    # ---- the decoder models/sampling.py drives ----------------------------------------------
    def start(self, idx: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """Prompts idx (B, T) -> the next symbol's logits (B, V) and the state to advance."""
        raise NotImplementedError

    def advance(self, state: Any, chosen: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """Append the chosen symbols (B,) -> the next logits (B, V) and the new state."""
        raise NotImplementedError

    # ---- embedding-level access (gradient attacks such as GCG in models/robustness/gcg.py) ----------
    def token_embedding(self) -> torch.nn.Embedding:
        """The input embedding table (V, C): an attack multiplies one-hot rows by it to take
        gradients with respect to discrete symbols. Families with embeddings opt in."""
        raise NotImplementedError(f"{self.family} models expose no token embedding")

    def logits_from_embeddings(self, emb: torch.Tensor) -> torch.Tensor:
        """emb (B, T, C), rows of token_embedding() or mixtures of them -> logits (B, T, V),
        exactly as logits() computes them from the symbols' embeddings."""
        raise NotImplementedError(f"{self.family} models expose no token embedding")
