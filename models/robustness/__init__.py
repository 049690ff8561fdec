"""Robustness of genray's models: evasion attacks on classifiers (ART-backed, with a hand-written
PGD for training loops)."""
from genray.models.robustness.attacks import METHODS, AttackResult, attack, pgd

__all__ = ["METHODS", "AttackResult", "attack", "pgd"]
