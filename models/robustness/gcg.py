"""An adversarial prompt suffix for a character language model, found by Greedy Coordinate
Gradient search (Zou et al. 2023, "Universal and Transferable Adversarial Attacks on Aligned
Language Models"): characters appended to a prompt so that the model continues with a chosen
target.

Each step takes the gradient of the target's negative log-likelihood with respect to the suffix
as one-hot rows (multiplied into the embedding table), keeps each position's top_k characters
with the most negative gradient (the linearised best swaps), draws `candidates` single-character
swaps among them, scores them all exactly in one batched forward pass and keeps the best.

Unlike GCG, which always moves to the best candidate, a step here keeps it only if it raises the
target's log-probability: the current suffix is not among the candidates, so always moving can
lose ground, and a monotone history makes the search's progress readable. A step with no
improving candidate changes nothing.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from genray.models.base import seeded
from genray.models.errors import OptionError

MAX_TARGET, MAX_SUFFIX, MAX_STEPS, MAX_CANDIDATES, MAX_SAMPLES = 64, 64, 500, 1024, 256


@dataclass
class SuffixAttackResult:
    prompt: str  # the prompt as scored: cut from the left where the model's context is short
    suffix: str
    target: str
    logprob_before: float  # log P(target | prompt), nats
    logprob_after: float  # log P(target | prompt + suffix)
    history: list[float]  # best log-probability after each step (non-decreasing)
    hit_rate_before: float  # fraction of `samples` sampled continuations of prompt that start with target
    hit_rate_after: float  # same for prompt + suffix; NaN for both when samples is 0
    steps: int
    prompt_cut: int = field(default=0)  # characters dropped from the left of the given prompt

    def summary(self) -> dict:
        def num(v: float) -> float | None:
            return None if math.isnan(v) else v

        return {"prompt": self.prompt, "suffix": self.suffix, "target": self.target,
                "logprob_before": self.logprob_before, "logprob_after": self.logprob_after,
                "gain": self.logprob_after - self.logprob_before,
                "hit_rate_before": num(self.hit_rate_before), "hit_rate_after": num(self.hit_rate_after),
                "steps": self.steps, "prompt_cut": self.prompt_cut}


def _check(model, prompt: str, target: str, suffix_len: int, steps: int, top_k: int, candidates: int,
           samples: int) -> None:
    """OptionError, naming the field, for settings the search cannot run with."""
    if getattr(model, "modality", None) != "text":
        raise OptionError("the suffix attack needs a text model (a character vocabulary)", "model")
    try:
        model.token_embedding()
    except (AttributeError, NotImplementedError):
        raise OptionError(f"{getattr(model, 'family', type(model).__name__)} models expose no token embedding: "
                          "the suffix attack needs embedding gradients", "model") from None
    if not isinstance(target, str) or not 1 <= len(target) <= MAX_TARGET:
        raise OptionError(f"target must be 1 to {MAX_TARGET} characters", "target")
    for name, text in (("prompt", prompt), ("target", target)):
        if not isinstance(text, str):
            raise OptionError(f"{name} must be a string", name)
        bad = model.vocab.unknown(text)
        if bad:
            raise OptionError(f"{name} has characters not in the model's vocabulary: {bad[:10]}", name)
    for name, value, lo, hi in (("suffix_len", suffix_len, 1, MAX_SUFFIX), ("steps", steps, 1, MAX_STEPS),
                                ("top_k", top_k, 1, None), ("candidates", candidates, 1, MAX_CANDIDATES),
                                ("samples", samples, 0, MAX_SAMPLES)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not lo <= value <= (hi or value):
            span = f"from {lo} to {hi}" if hi is not None else f"at least {lo}"
            raise OptionError(f"{name} must be an integer {span}, got {value!r}", name)
    block = getattr(model, "block_size", None)
    if block is not None and suffix_len + len(target) > block:
        raise OptionError(f"suffix_len + len(target) = {suffix_len + len(target)} exceeds the model's context of "
                          f"{block} symbols", "suffix_len")


def _target_logprob(model, prefix_emb: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """log P(target | prefix) (B,) from prefix embeddings (B, P, C) and target ids (L,)."""
    B, P, _ = prefix_emb.shape
    L = len(target)
    tgt_emb = model.token_embedding()(target).expand(B, L, -1)  # (B, L, C)
    logits = model.logits_from_embeddings(torch.cat([prefix_emb, tgt_emb], 1))  # (B, P + L, V)
    lp = F.log_softmax(logits[:, P - 1: P + L - 1].float(), -1)  # (B, L, V): the positions predicting target
    return lp.gather(2, target.expand(B, L).unsqueeze(2)).squeeze(2).sum(1)


def _hit_rate(model, context: str, target: str, samples: int, temperature: float, seed: int) -> float:
    """Fraction of `samples` continuations of context, len(target) symbols each, equal to target.
    Row i draws from seed + i, so before and after share their random numbers."""
    if not samples:
        return math.nan
    gens = [seeded(seed + i) for i in range(samples)]
    outs = model.sample(samples, generator=gens, prompt=context, max_tokens=len(target), temperature=temperature)
    # sample() returns each prompt followed by its continuation (an empty prompt adds nothing).
    return sum(o[len(context):].startswith(target) for o in outs) / samples


def suffix_attack(model, prompt: str, target: str, *, suffix_len: int = 10, steps: int = 50, top_k: int = 32,
                  candidates: int = 128, samples: int = 32, temperature: float = 1.0,
                  seed: int = 0) -> SuffixAttackResult:
    """A suffix of suffix_len in-vocabulary characters that, appended to `prompt`, raises
    log P(target | prompt + suffix) for a text model with token_embedding() and
    logits_from_embeddings() (transformer, rnn). The prompt is cut from the left so that
    prompt + suffix + target fits the model's context. An empty prompt stands for the
    vocabulary's start symbol when scored alone, as in sampling. Seeded: equal arguments give
    equal results."""
    _check(model, prompt, target, suffix_len, steps, top_k, candidates, samples)
    if not temperature > 0:
        raise OptionError(f"temperature must be > 0, got {temperature}", "temperature")
    block = getattr(model, "block_size", None)
    cut = max(0, len(prompt) + suffix_len + len(target) - block) if block is not None else 0
    prompt = prompt[cut:]
    vocab, dev = model.vocab, model.device
    was_training = model.training
    model.eval()  # no dropout: the search and its scores see one fixed function
    try:
        W = model.token_embedding().weight  # (V, C)
        V = W.shape[0]

        def ids(text: str) -> torch.Tensor:
            return torch.as_tensor(vocab.encode(text), device=dev)

        tgt = ids(target)  # (L,)
        pre = ids(prompt) if prompt else torch.empty(0, dtype=torch.long, device=dev)  # (P,)
        gen = seeded(seed)
        fill = next((c for c in "! " if c in vocab.symbols), vocab.symbols[0])  # GCG starts from "! ! !"
        suffix = ids(fill * suffix_len)  # (S,)
        with torch.no_grad():
            before_ctx = pre if len(pre) else ids(vocab.start)
            before = float(_target_logprob(model, model.token_embedding()(before_ctx)[None], tgt)[0])
            pre_emb = model.token_embedding()(pre)[None]  # (1, P, C)
            best = float(_target_logprob(model, torch.cat([pre_emb, W[suffix][None]], 1), tgt)[0])
        k = max(1, min(top_k, V - 1))  # the current character is never a candidate
        history = []
        for _ in range(steps):
            onehot = F.one_hot(suffix, V).to(W.dtype).requires_grad_(True)  # (S, V)
            emb = torch.cat([pre_emb, (onehot @ W)[None]], 1)  # (1, P + S, C)
            (grad,) = torch.autograd.grad(-_target_logprob(model, emb, tgt).sum(), onehot)  # (S, V)
            grad[torch.arange(suffix_len, device=dev), suffix] = math.inf  # a swap must change the character
            top = (-grad).topk(k, dim=1).indices  # (S, k): the most promising characters per position
            pos = torch.randint(suffix_len, (candidates,), generator=gen).to(dev)  # (N,)
            choice = torch.randint(k, (candidates,), generator=gen).to(dev)  # (N,)
            cand = suffix.repeat(candidates, 1)  # (N, S)
            cand[torch.arange(candidates, device=dev), pos] = top[pos, choice]
            with torch.no_grad():
                scores = _target_logprob(model, torch.cat([pre_emb.expand(candidates, -1, -1), W[cand]], 1), tgt)
            i = int(scores.argmax())
            if float(scores[i]) > best:
                best, suffix = float(scores[i]), cand[i].clone()
            history.append(best)
        suffix_text = vocab.decode(suffix.tolist())
        hit_before = _hit_rate(model, prompt, target, samples, temperature, seed)
        hit_after = _hit_rate(model, prompt + suffix_text, target, samples, temperature, seed)
    finally:
        model.train(was_training)
    return SuffixAttackResult(prompt=prompt, suffix=suffix_text, target=target, logprob_before=before,
                              logprob_after=best, history=history, hit_rate_before=hit_before,
                              hit_rate_after=hit_after, steps=steps, prompt_cut=cut)
