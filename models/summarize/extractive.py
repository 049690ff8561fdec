"""Extractive baselines and unsupervised methods: lead-k, random-k, and sumy's TextRank and
LexRank on sentences the caller has already split. Each returns sentence indices in document
order."""
from __future__ import annotations

import numpy as np

from genray.models.summarize.text import words

METHODS = ("lead", "random", "textrank", "lexrank")


class _Tokenizer:
    """sumy's tokenizer interface over genray's word splitter: sumy's own needs NLTK's punkt
    data, which is downloaded at run time."""
    language = "english"

    def to_words(self, sentence: str) -> list[str]:
        return [w for w in words(sentence) if w[0].isalnum()]

    def to_sentences(self, paragraph: str) -> list[str]:
        return [paragraph]


def _sumy(method: str, sentences: list[str]) -> list[int]:
    from sumy.models.dom import ObjectDocumentModel, Paragraph, Sentence
    from sumy.nlp.stemmers import Stemmer
    from sumy.summarizers.lex_rank import LexRankSummarizer
    from sumy.summarizers.text_rank import TextRankSummarizer
    from sumy.utils import get_stop_words

    tok = _Tokenizer()
    objs = [Sentence(s, tok) for s in sentences]
    summarizer = (TextRankSummarizer if method == "textrank" else LexRankSummarizer)(Stemmer("english"))
    summarizer.stop_words = get_stop_words("english")
    best_first = []

    def keep_all(infos):  # sumy hands its sentence count the sentences sorted by rating, best first
        best_first.extend(infos)
        return infos

    summarizer(ObjectDocumentModel([Paragraph(objs)]), keep_all)
    where = {id(o): i for i, o in enumerate(objs)}
    return [where[id(info.sentence)] for info in best_first]


def rank(method: str, sentences: list[str], seed: int = 0) -> list[int]:
    """Every sentence index, the one `method` would keep first first."""
    if method == "lead":
        return list(range(len(sentences)))
    if method == "random":
        return np.random.default_rng(seed).permutation(len(sentences)).tolist()
    if method in ("textrank", "lexrank"):
        return _sumy(method, sentences)
    raise ValueError(f"unknown extractive method {method!r}; known: {METHODS}")


def extract(method: str, sentences: list[str], k: int, seed: int = 0) -> list[int]:
    """Indices of the k sentences `method` keeps, in document order."""
    return sorted(rank(method, sentences, seed)[:k])


def by_score(scores) -> list[int]:
    """Indices by descending score (ties to the earlier sentence)."""
    return sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))


def within_tokens(sentences: list[str], ranked: list[int], max_tokens: int) -> list[int]:
    """The best-ranked sentences whose words fit in max_tokens (at least one), in document order."""
    kept, used = [], 0
    for i in ranked:
        n = len(words(sentences[i]))
        if kept and used + n > max_tokens:
            continue
        kept.append(i)
        used += n
    return sorted(kept)
