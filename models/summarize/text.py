"""Words, sentences and vocabularies of scientific prose, shared by the extractive and
abstractive summarizers and by the ACLSum tables."""
from __future__ import annotations

import re
from collections import Counter
from typing import Iterable

ASPECTS = ("challenge", "approach", "outcome")
SECTIONS = ("abstract", "introduction", "conclusion")
PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
SPECIALS = (PAD, UNK, BOS, EOS, *(f"<{a}>" for a in ASPECTS))

_WORD = re.compile(r"[a-z0-9]+(?:[-'.][a-z0-9]+)*|[^\sa-z0-9]", re.I)
# A sentence ends at . ! or ? followed by space and a capital, a digit or an opening bracket,
# unless the word before is an abbreviation that scientific text uses mid-sentence.
_END = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[A-Z0-9\"'(\[])")
_ABBREV = re.compile(r"(?:\b(?:e\.g|i\.e|et al|etc|vs|cf|Figs?|Eqs?|Sec|Tab|No|approx|resp|Dr|Mr|Ms)\.|\b[A-Z]\.)$")


def words(text: str) -> list[str]:
    """Lower-cased word and punctuation tokens."""
    return [w.lower() for w in _WORD.findall(text)]


def split_sentences(text: str) -> list[str]:
    """Plain text -> sentences (paragraph breaks always end one)."""
    out = []
    for para in re.split(r"\n\s*\n", text):
        para = " ".join(para.split())
        start = 0
        for m in _END.finditer(para):
            if _ABBREV.search(para[start:m.start()]):
                continue
            out.append(para[start:m.start()].strip())
            start = m.end()
        if para[start:].strip():
            out.append(para[start:].strip())
    return [s for s in out if s]


def detokenize(tokens: Iterable[str]) -> str:
    """Tokens -> text with the usual spacing around punctuation."""
    text = " ".join(tokens)
    text = re.sub(r"\s+([.,;:!?)\]%])", r"\1", text)
    text = re.sub(r"([(\[])\s+", r"\1", text)
    return text[:1].upper() + text[1:]


def build_vocab(texts: Iterable[str], min_count: int = 2, max_size: int = 12000) -> list[str]:
    """SPECIALS, then the words seen at least min_count times, most frequent first."""
    counts = Counter(w for t in texts for w in words(t))
    common = [w for w, c in counts.most_common(max_size) if c >= min_count and w not in SPECIALS]
    return [*SPECIALS, *common]
