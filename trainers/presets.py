"""Per-family presets, in one place: the data set, budget and optimizer settings a family trains
with by default (the CLI's defaults, and the quality budgets benchmarks/quality.py reports), the
quick models `genray up` trains, and the models the quality benchmark trains under its own names.
Architecture defaults stay with each family (`default_config(meta)`)."""
from __future__ import annotations

from genray.models.errors import ConfigError
from genray.trainers.config import TrainConfig

# The batch size is per worker; small text batches make more steps in the same time, which pays on CPUs.
TRAINING: dict[str, dict] = {
    "markov": {"dataset": "shakespeare", "epochs": 1, "batch_size": 256},
    "ar": {"dataset": "sunspots", "epochs": 1, "batch_size": 64},
    "transformer": {"dataset": "shakespeare", "epochs": 1, "batch_size": 8, "log_every": 200,
                    "lr": 3e-3, "betas": (0.9, 0.99), "weight_decay": 0.1},
    "rnn": {"dataset": "shakespeare", "epochs": 3, "batch_size": 16, "log_every": 200, "lr": 3e-3},
    "vae": {"dataset": "mnist", "epochs": 30, "batch_size": 128, "lr": 4e-3},
    "gan": {"dataset": "mnist", "epochs": 30, "batch_size": 64, "lr": 5e-4, "betas": (0.5, 0.999)},
    "music-gan": {"dataset": "chorale-bars", "epochs": 30, "batch_size": 64, "lr": 5e-4, "betas": (0.5, 0.9)},
    # A coupling's exp(s) can blow a rare batch's gradient up by orders of magnitude and undo an
    # epoch of progress: clip the norm.
    "flow": {"dataset": "mnist", "epochs": 24, "batch_size": 64, "lr": 1e-3, "max_grad_norm": 100.0},
    # With --defense adversarial the PGD budget ramps up over the first 30% of the steps: the
    # two-convolution CNN trained at eps 0.3 from the start stays at chance.
    "classifier": {"dataset": "mnist", "epochs": 20, "batch_size": 64, "lr": 2e-3, "schedule": "cosine",
                   "warmup_steps": 100, "min_lr_ratio": 0.0, "defense_ramp": 0.3},
    # 2,160 crops of 64x64; a few passes learn one style (90 s each on 2 cores).
    "style-net": {"dataset": "photo-crops", "epochs": 4, "batch_size": 16, "lr": 2e-3},
    # About 3,800 sentences, or 300 (source, summary) pairs: small data, many short epochs.
    "sentence-scorer": {"dataset": "aclsum", "epochs": 10, "batch_size": 64, "lr": 2e-3, "weight_decay": 1e-4},
    "pointer-generator": {"dataset": "aclsum-pairs", "epochs": 15, "batch_size": 16, "lr": 2e-3,
                          "max_grad_norm": 2.0},
}
# Where a family models another modality than its default data set's, these settings win.
BY_MODALITY: dict[tuple[str, str], dict] = {
    ("markov", "music"): {"batch_size": 256},
    # Melodies are short and few: a gentler step overfits less.
    ("transformer", "music"): {"epochs": 12, "batch_size": 16, "lr": 1e-3},
    ("rnn", "music"): {"epochs": 16, "batch_size": 16},
}

# Sizes for one accelerator, by profile and family: architecture overrides on top of the family's
# default_config ("model") and training settings on top of its preset ("train"), with bf16 autocast.
# The GPU transformer is nanoGPT's Shakespeare size; dropout holds off the overfit that 4.3M
# characters allow it, and the best epoch is published (early stopping). It is the one measured on
# a GPU (docs/benchmarks.md); the others widen the CPU defaults and batch more rows per step.
_GPU = {"precision": "bf16", "log_every": 0}
PROFILES: dict[str, dict[str, dict]] = {
    "gpu": {
        "transformer": {"model": {"block_size": 256, "n_layer": 6, "n_head": 6, "n_embd": 384, "dropout": 0.2},
                        "train": {"epochs": 40, "batch_size": 64, "lr": 1e-3, "betas": (0.9, 0.99),
                                  "weight_decay": 0.1, "schedule": "cosine", "warmup_steps": 200,
                                  "max_grad_norm": 1.0, **_GPU}},
        "rnn": {"model": {"n_embd": 128, "hidden": 512, "n_layer": 2, "dropout": 0.2},
                "train": {"epochs": 20, "batch_size": 64, "lr": 2e-3, "schedule": "cosine", "warmup_steps": 100,
                          "max_grad_norm": 1.0, **_GPU}},
        "vae": {"model": {"latent_dim": 32, "hidden": 64}, "train": {"epochs": 60, "batch_size": 256, **_GPU}},
        "gan": {"model": {"hidden": 128}, "train": {"epochs": 60, "batch_size": 256, **_GPU}},
        "flow": {"model": {"n_coupling": 8, "hidden": 128, "scales": 2},
                 "train": {"epochs": 60, "batch_size": 256, "max_grad_norm": 100.0, **_GPU}},
        "classifier": {"model": {"width": 64, "features": 128, "depth": 2},
                       "train": {"epochs": 20, "batch_size": 256, **_GPU}},
    },
}

# What `genray up` trains when the registry lacks it: a quick model of every family, the sequence
# families and the GAN on music too, an image classifier, a style network and the two
# summarizers (name -> TrainSpec arguments).
QUICK: dict[str, dict] = {
    "markov": {"family": "markov"},
    "ar": {"family": "ar"},
    "vae": {"family": "vae"},
    "rnn": {"family": "rnn"},
    "transformer": {"family": "transformer"},
    "gan": {"family": "gan", "epochs": 10},
    "flow": {"family": "flow", "epochs": 3},
    "chorale-rnn": {"family": "rnn", "dataset": "chorales"},
    "classifier": {"family": "classifier"},  # served at /v1/attack; it also judges the vae's reconstructions
    "chorale-gan": {"family": "music-gan", "epochs": 10},
    "style-brick": {"family": "style-net"},  # POST /v1/style with "model"
    "summarizer": {"family": "sentence-scorer"},  # POST /v1/summarize
    "abstractor": {"family": "pointer-generator", "model": {"extractor": "summarizer"}},
}

def improvable() -> dict[str, dict]:
    """The defaults whose quick budget is cut short (name -> TrainSpec arguments at the family's
    default budget): `genray up` trains these again once everything serves, and the better
    version replaces the quick one."""
    return {name: {k: v for k, v in spec.items() if k in ("family", "dataset")}
            for name, spec in QUICK.items() if "epochs" in spec}


# The quality benchmark's models, by task, at the families' default budgets. Their names are
# their own, so the table never scores a model that another command trained differently.
QUALITY: dict[str, dict[str, dict]] = {
    "text": {"quality-markov": {"family": "markov"}, "quality-rnn": {"family": "rnn"},
             "quality-transformer": {"family": "transformer"}},
    "music": {"quality-chorale-markov": {"family": "markov", "dataset": "chorales"},
              "quality-chorale-rnn": {"family": "rnn", "dataset": "chorales"},
              "quality-chorale-transformer": {"family": "transformer", "dataset": "chorales"}},
    "image": {"quality-vae": {"family": "vae"}, "quality-flow": {"family": "flow"}, "quality-gan": {"family": "gan"}},
    "series": {"quality-ar": {"family": "ar"}, "quality-ar-macro": {"family": "ar", "dataset": "macro"}},
}


def default_dataset(family: str) -> str | None:
    return TRAINING.get(family, {}).get("dataset")


def training_config(family: str, modality: str, overrides: dict | None = None) -> TrainConfig:
    """The family's training settings for data of `modality`, with `overrides` (None values ignored) on top."""
    settings = {**TRAINING.get(family, {}), **BY_MODALITY.get((family, modality), {})}
    settings.pop("dataset", None)
    settings.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return TrainConfig.from_dict(settings)


def profile(name: str, family: str) -> dict:
    """{"model": architecture overrides, "train": training settings} of a profile's family."""
    if name not in PROFILES:
        raise ConfigError(f"unknown profile {name!r}; known: {sorted(PROFILES)}")
    if family not in PROFILES[name]:
        raise ConfigError(f"profile {name!r} has no settings for {family!r}; it has {sorted(PROFILES[name])}")
    return PROFILES[name][family]
