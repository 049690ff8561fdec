"""Robustness of genray's models: evasion attacks on classifiers (ART-backed, with a hand-written
PGD for training loops)."""
from genray.models.robustness.attacks import METHODS, AttackResult, attack, pgd
from genray.models.robustness.detect import anomaly_scores, auroc, ood_sets, threshold
from genray.models.robustness.discriminator import DiscriminatorAttackResult, discriminator_attack
from genray.models.robustness.gcg import SuffixAttackResult, suffix_attack
from genray.models.robustness.purify import Defended, Purifier, evaluate_purification, flow_log_density
from genray.models.robustness.reconstruction import ReconstructionAttackResult, reconstruction_attack

__all__ = ["METHODS", "AttackResult", "attack", "pgd",
           "anomaly_scores", "auroc", "ood_sets", "threshold",
           "Defended", "Purifier", "evaluate_purification", "flow_log_density",
           "ReconstructionAttackResult", "reconstruction_attack",
           "DiscriminatorAttackResult", "discriminator_attack", "SuffixAttackResult", "suffix_attack"]
