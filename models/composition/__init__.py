"""Composition from the rules of tonal harmony: a four-part (SATB) chorale composer and harmoniser
(theory.py), and a rule checker that scores its chorales and Bach's the same way (analysis.py)."""
