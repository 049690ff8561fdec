"""Explanations of genray's models, on Captum:

targets.py       what is explained, per family (a class logit, a symbol's log-probability, an ELBO, ...)
methods.py       explain(): Captum's attribution methods through one call, and Markov chains' exact shares
faithfulness.py  deletion and insertion curves against random and edge rankings, Captum's infidelity
                 and max-sensitivity
dependence.py    partial dependence and ICE curves, latent traversals
render.py        pictures: heatmap overlays, shaded text, curves, traversal grids
catalog.py       which methods apply to which family
"""
from genray.models.explain.methods import METHODS, Explanation, explain, markov_contributions

__all__ = ["METHODS", "Explanation", "explain", "markov_contributions"]
