"""Style transfer on random-filter texture statistics: features, losses, the optimisation, and a
feed-forward network trained for one style."""
from genray.models.style.features import STYLE_LOSSES, RandomFeatures, gram, stats, style_distance, style_targets
from genray.models.style.network import StyleNet
from genray.models.style.photos import CONTENT, PHOTOS, STYLES, photo
from genray.models.style.transfer import MAX_SIDE, MAX_STEPS, Transfer, content_ssim, fit_size, rgb, transfer

__all__ = ["CONTENT", "MAX_SIDE", "MAX_STEPS", "PHOTOS", "STYLES", "STYLE_LOSSES", "RandomFeatures", "StyleNet",
           "Transfer",
           "content_ssim", "fit_size", "gram", "photo", "rgb", "stats", "style_distance", "style_targets", "transfer"]
