"""Generative models in pure PyTorch: no Ray below this package."""
from models.base import GenerativeModel, build, family_class, family_names, seeded

__all__ = ["GenerativeModel", "build", "family_class", "family_names", "seeded"]
