"""A feed-forward style-transfer network for one style (Johnson et al., 2016), trained through the
Ray Train loop on crops of photographs with the same random-feature losses as the optimisation
(models/style/features.py): one pass per image instead of hundreds.

Encoder (a 9x9 convolution, two stride-2 ones), residual blocks, decoder (two nearest-neighbour
upsamplings, a 9x9 convolution), with instance normalisation. Its output is added to the input
in logit space and the last convolution starts at zero, so training starts from the identity
and learns the style as a change of the photograph.
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genray.models.base import TrainableModel
from genray.models.catalog import register
from genray.models.errors import DataError
from genray.models.style.features import RandomFeatures, content_distance, style_distance, style_targets
from genray.models.style.photos import STYLES, photo
from genray.models.style.transfer import Transfer, fit_size, prepare, scored


def _conv(c_in: int, c_out: int, k: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, k, stride, k // 2, padding_mode="reflect"), nn.InstanceNorm2d(c_out, affine=True),
            nn.ReLU()]


class _Residual(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(*_conv(c, c, 3), nn.Conv2d(c, c, 3, 1, 1, padding_mode="reflect"),
                                  nn.InstanceNorm2d(c, affine=True))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


@register
class StyleNet(TrainableModel):
    """Trained like any model (kind "stylizer"); its validation "NLL" is the training objective,
    style_weight x style distance + content distance, per image."""
    family = "style-net"
    kind = "stylizer"
    modality = "image"
    nll_unit = "loss/image"

    def __init__(self, style: str = "brick", width: int = 16, blocks: int = 3, style_weight: float = 4.0,
                 style_side: int = 256, seed: int = 0):
        super().__init__()
        if style not in STYLES:
            raise DataError(f"style must be one of the built-in textures {list(STYLES)}, got {style!r}")
        self.style, self.style_weight, self.style_side, self.seed = style, style_weight, style_side, seed
        w = width
        self.net = nn.Sequential(
            *_conv(3, w, 9), *_conv(w, 2 * w, 3, 2), *_conv(2 * w, 4 * w, 3, 2),  # (B, 4w, H/4, W/4)
            *[_Residual(4 * w) for _ in range(blocks)],
            nn.Upsample(scale_factor=2), *_conv(4 * w, 2 * w, 3), nn.Upsample(scale_factor=2), *_conv(2 * w, w, 3),
            nn.Conv2d(w, 3, 9, 1, 4, padding_mode="reflect"),  # (B, 3, H, W): the change, in logits
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        # Fixed by the seed, so rebuilt rather than saved: kept out of the module's state.
        self.__dict__.update(_features=None, _targets=None)

    @classmethod
    def default_config(cls, meta: dict) -> dict:
        if meta.get("shape", [0])[0] != 3:
            raise DataError(f"a style network trains on colour photographs (data set 'photo-crops'), not "
                            f"{meta.get('name')!r}")
        return {"family": cls.family}

    @classmethod
    def search_space(cls, meta: dict) -> dict[str, tuple]:
        return {"lr": ("loguniform", 3e-4, 1e-2), "style_weight": ("loguniform", 1.0, 30.0)}

    def losses(self) -> tuple[RandomFeatures, list[Tensor]]:
        """The feature network and the style's Gram targets, built on first use on this device."""
        if self._features is None or self._features.convs[0].weight.device != self.device:
            features = RandomFeatures(seed=self.seed).to(self.device)
            with torch.no_grad():
                targets = style_targets(features(fit_size(photo(self.style), self.style_side)[None].to(self.device)))
            self.__dict__.update(_features=features, _targets=targets)
        return self._features, self._targets

    def stylize(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) in [0, 1] (H and W multiples of 4 are exact; others are padded) -> the same in the style."""
        H, W = images.shape[2:]
        pad = (0, -W % 4, 0, -H % 4)
        x = F.pad(images, pad, mode="replicate") if any(pad) else images
        logits = torch.logit(x.clamp(1e-3, 1 - 1e-3))
        return torch.sigmoid(logits + self.net(x))[:, :, :H, :W]

    def _objective(self, batch: dict[str, Tensor]) -> Tensor:
        x = batch["image"].float() / 255.0
        features, targets = self.losses()
        y = self.stylize(x)
        fy = features(y)
        with torch.no_grad():
            fx = features(x)
        return self.style_weight * style_distance(fy, targets) + content_distance(fy, fx)  # (B,)

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"loss": self._objective(batch).mean()}

    @torch.no_grad()
    def eval_nll(self, batch: dict[str, Tensor]) -> tuple[float, int]:
        per = self._objective(batch)
        return float(per.sum()), len(per)

    @torch.no_grad()
    def transfer(self, content: Tensor, max_side: int = 256) -> Transfer:
        """content (C, H, W) in [0, 1] in this network's style, at most max_side pixels a side, scored
        as the optimisation's results are (the style scaled to the content's area)."""
        t0 = time.perf_counter()
        content, style = prepare(content, photo(self.style), max_side)
        self.eval()
        out = self.stylize(content[None].to(self.device))[0].cpu()
        seconds = time.perf_counter() - t0
        net = RandomFeatures(seed=self.seed)
        return scored(out, content, style, net, style_targets(net(style[None])), "gram", seconds)
