"""Modality codecs: symbols, pixels and notes to and from what users and files hold."""
from genray.models.codecs.images import from_png, grid, to_png
from genray.models.codecs.music import EventVocab
from genray.models.codecs.text import CharVocab


def make_vocab(symbols: str | list[str]) -> CharVocab | EventVocab:
    """A vocabulary from its saved form: a string of characters (text) or a list of events (music)."""
    return CharVocab(symbols) if isinstance(symbols, str) else EventVocab(symbols)


__all__ = ["CharVocab", "EventVocab", "from_png", "grid", "make_vocab", "to_png"]
