"""Inpainting: masks, generative inpainters (VAE, flow) and the baselines they are scored against."""
from genray.models.inpaint.baselines import BASELINES, baseline_fill
from genray.models.inpaint.generative import METHODS, family_of, inpaint
from genray.models.inpaint.masks import MASKS, composite, make_mask, mask_from_png, masked_psnr, per_image

__all__ = ["BASELINES", "MASKS", "METHODS", "baseline_fill", "composite", "family_of", "inpaint", "make_mask",
           "mask_from_png", "masked_psnr", "per_image"]
