"""Robustness of genray's models, in plain PyTorch:

attacks.py         evasion attacks on classifiers (ART-backed), and a hand-written PGD for training loops
reconstruction.py  a VAE input whose reconstruction decodes as a chosen class (Tabacof et al. 2016)
gcg.py             a prompt suffix that makes a char LM continue with a chosen text (Zou et al. 2023)
discriminator.py   real images a GAN's discriminator scores as fake
poison.py          label flips, BadNets and text backdoors as functions of a batch of training rows
backdoor.py        detectors of poisoned training rows: spectral signatures, activation clustering, k-NN
purify.py          purification through a VAE or flow, and the adaptive (BPDA, full-gradient) evaluation
detect.py          likelihood detection of out-of-distribution and adversarial inputs
catalog.py         which of these apply to which family
"""
from genray.models.robustness.attacks import METHODS, AttackResult, attack, pgd
from genray.models.robustness.detect import anomaly_scores, auroc, evasive_pgd, likelihood_bits, ood_sets, threshold
from genray.models.robustness.discriminator import DiscriminatorAttackResult, discriminator_attack
from genray.models.robustness.gcg import SuffixAttackResult, suffix_attack
from genray.models.robustness.poison import Poison
from genray.models.robustness.purify import Defended, Purifier, evaluate_purification, flow_log_density
from genray.models.robustness.reconstruction import ReconstructionAttackResult, reconstruction_attack

__all__ = ["METHODS", "AttackResult", "attack", "pgd",
           "anomaly_scores", "auroc", "evasive_pgd", "likelihood_bits", "ood_sets", "threshold",
           "Defended", "Purifier", "evaluate_purification", "flow_log_density",
           "ReconstructionAttackResult", "reconstruction_attack",
           "DiscriminatorAttackResult", "discriminator_attack", "SuffixAttackResult", "suffix_attack", "Poison"]
