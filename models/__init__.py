"""Generative models in pure PyTorch: no Ray below this package."""
from genray.models.base import GenerativeModel, seeded
from genray.models.catalog import build, family_class, family_names

__all__ = ["GenerativeModel", "build", "family_class", "family_names", "seeded"]
