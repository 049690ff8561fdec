"""Inpainting: masks, generative inpainters (VAE, flow) and the baselines they are scored against;
text infilling with a character LM."""
from genray.models.inpaint.baselines import BASELINES, baseline_fill
from genray.models.inpaint.generative import inpaint, inpaint_methods, methods_of
from genray.models.inpaint.masks import MASKS, composite, make_mask, mask_from_png, masked_psnr, per_image
from genray.models.inpaint.text import infill

__all__ = ["BASELINES", "MASKS", "baseline_fill", "composite", "infill", "inpaint", "inpaint_methods", "make_mask",
           "mask_from_png", "masked_psnr", "methods_of", "per_image"]
