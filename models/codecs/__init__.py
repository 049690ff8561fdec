"""Modality codecs: symbols and pixels to and from what users and files hold."""
from models.codecs.images import from_png, grid, to_png
from models.codecs.text import CharVocab

__all__ = ["CharVocab", "from_png", "grid", "to_png"]
