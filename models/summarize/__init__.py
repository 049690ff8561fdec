"""Summarization: extractive baselines and sumy's graph rankers, a supervised sentence scorer and
an abstractive pointer-generator (both trained through the Ray Train loop), and ROUGE."""
from __future__ import annotations

from typing import Callable

from genray.models.errors import ConfigError, OptionError
from genray.models.summarize.extractive import METHODS, by_score, extract, rank, within_tokens
from genray.models.summarize.pointer import PointerGenerator
from genray.models.summarize.rouge import rouge
from genray.models.summarize.scorer import SentenceScorer
from genray.models.summarize.text import ASPECTS, detokenize, split_sentences, words

Extractor = Callable[[list[str], str, int], list[int]]  # (sentences, aspect, k) -> kept indices


def ranked(method, sentences: list[str], aspect: str, seed: int = 0) -> list[int]:
    """Every sentence index, best first, by an extractive method's name or a sentence scorer."""
    if isinstance(method, SentenceScorer):
        return by_score(method.score(sentences, aspect))
    return rank(method, sentences, seed)


def picker(scorer: SentenceScorer) -> Extractor:
    """A pointer-generator's source selector: the scorer's k best sentences, in document order."""
    def pick(sentences: list[str], aspect: str, k: int) -> list[int]:
        return sorted(ranked(scorer, sentences, aspect)[:k])
    return pick


def resolve(name: str, load: Callable[[str], tuple]) -> tuple:
    """(method, registry version or None, extractor) for a summarizer's name: a built-in
    extractive method, or a registry model that load(name) -> (model, record) reads; a
    pointer-generator's extractor, when it names a sentence scorer, is loaded the same way."""
    if name in METHODS:
        return name, None, None
    model, rec = load(name)
    if not isinstance(model, (SentenceScorer, PointerGenerator)):
        raise OptionError(f"{name} is a {model.family} model, not a summarizer", "model")
    extractor = None
    if isinstance(model, PointerGenerator) and model.extractor not in METHODS:
        try:
            scorer, _ = load(model.extractor)
        except LookupError:
            raise ConfigError(f"{name}'s extractor {model.extractor!r} is neither a method ({list(METHODS)}) nor a "
                              f"model in the registry", "model") from None
        extractor = picker(scorer)
    return model, rec.version, extractor


def summarize(method, sentences: list[str], aspect: str, max_sentences: int | None = 3,
              max_tokens: int | None = None, seed: int = 0, extractor: Extractor | None = None) -> dict:
    """A summary of `sentences` for `aspect` by `method`: an extractive method's name, a
    SentenceScorer, or a PointerGenerator (with `extractor` choosing its source sentences).
    Extractive summaries keep max_sentences sentences, or as many whole sentences as fit in
    max_tokens words; returns {"summary", "sentences": kept indices (None when abstractive)}."""
    if aspect not in ASPECTS:
        raise OptionError(f"aspect must be one of {list(ASPECTS)}, got {aspect!r}", "aspect")
    if not sentences:
        raise OptionError("the text has no sentences", "text")
    if isinstance(method, PointerGenerator):
        pick = extractor or (lambda s, a, k: extract(method.extractor, s, k))
        chosen = pick(sentences, aspect, method.source_sentences)
        return {"summary": method.summarize(aspect, [sentences[i] for i in chosen], max_tokens), "sentences": None,
                "source": chosen}
    best = ranked(method, sentences, aspect, seed)
    kept = sorted(best[:max_sentences]) if max_tokens is None else within_tokens(sentences, best, max_tokens)
    return {"summary": " ".join(sentences[i] for i in kept), "sentences": kept, "source": None}


__all__ = ["ASPECTS", "METHODS", "PointerGenerator", "SentenceScorer", "detokenize", "extract", "rouge",
           "picker", "ranked", "resolve", "split_sentences", "summarize", "words"]
