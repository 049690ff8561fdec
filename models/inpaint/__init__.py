"""Inpainting: masks, generative inpainters (VAE, flow) and the baselines they are scored against;
text infilling with a character LM."""
from genray.models.inpaint.baselines import BASELINES, baseline_fill
from genray.models.inpaint.generative import METHODS, family_of, inpaint
from genray.models.inpaint.masks import MASKS, composite, make_mask, mask_from_png, masked_psnr, per_image
from genray.models.inpaint.text import infill

__all__ = ["BASELINES", "MASKS", "METHODS", "baseline_fill", "composite", "family_of", "infill", "inpaint", "make_mask",
           "mask_from_png", "masked_psnr", "per_image"]
