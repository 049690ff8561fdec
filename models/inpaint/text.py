"""Text infilling with a character language model: fill the gap between a left and a right
context. The LM proposes fills by continuing the left side; each proposal is ranked by the LM's
log-probability of the whole text, left + fill + right, so the right side decides among them."""
from __future__ import annotations

import torch

from genray.models.base import seeded
from genray.models.errors import OptionError

MAX_CANDIDATES = 256
MAX_LENGTH = 256  # characters of one fill


def infill(model, left: str, right: str, *, length: int, candidates: int = 32, seed: int = 0,
           temperature: float = 1.0, top: int = 5) -> list[tuple[str, float]]:
    """The `top` distinct fills of `length` characters by a text model, best first, each with
    log p(left + fill + right) in nats."""
    if getattr(model, "modality", None) != "text":
        raise OptionError(f"text infilling needs a text model, not a {getattr(model, 'family', type(model).__name__)}",
                          "model")
    if not 1 <= length <= MAX_LENGTH:
        raise OptionError(f"length must be in [1, {MAX_LENGTH}], got {length}", "length")
    if not 1 <= candidates <= MAX_CANDIDATES:
        raise OptionError(f"candidates must be in [1, {MAX_CANDIDATES}], got {candidates}", "candidates")
    for field, side in (("left", left), ("right", right)):
        bad = model.vocab.unknown(side) if side else []
        if bad:
            raise OptionError(f"{field} has characters not in the model's vocabulary: {bad[:10]}", field)
    gens = [seeded(seed + i) for i in range(candidates)]
    samples = model.sample(candidates, generator=gens, prompt=left or None, max_tokens=length,
                           temperature=temperature)
    fills = list(dict.fromkeys(s[len(left):] for s in samples))  # distinct, in the order drawn
    with torch.no_grad():
        scores = [float(model.log_prob(left + f + right)[0]) for f in fills]
    ranked = sorted(zip(fills, scores), key=lambda p: -p[1])
    return ranked[:top]
