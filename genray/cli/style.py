"""genray style: redraw a photograph in another image's texture statistics, in-process, as POST
/v1/style does (optimisation on a random-filter network's Gram matrices, or one pass of a style
network of the registry); writes a PNG."""
from __future__ import annotations

from genray.cli.common import CliError


def add_parser(sub, storage, ray) -> None:
    p = sub.add_parser("style", parents=[storage], help="style transfer: a photograph in another image's textures")
    p.add_argument("content", help="an image file, or a built-in photograph (astronaut, chelsea, coffee, rocket)")
    p.add_argument("style", nargs="?", help="an image file, or a built-in one (immunohistochemistry, "
                                            "hubble_deep_field, brick, gravel, grass, colorwheel)")
    p.add_argument("--model", help="instead of a style: a style network of the registry (one pass)")
    p.add_argument("--strength", type=float, default=0.8, help="the share of the style distance to remove, (0, 1]")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--max-side", type=int, default=256, help="the output's longer side in pixels")
    p.add_argument("--loss", default="gram", choices=["gram", "stats"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", default="styled.png")
    p.set_defaults(fn=run)


def run(args) -> int:
    import os

    import numpy as np
    import torch
    from PIL import Image

    from genray.models.codecs.images import to_png
    from genray.models.style import PHOTOS, photo, transfer

    def load(value: str) -> torch.Tensor:
        if value in PHOTOS:
            return photo(value)
        if not os.path.isfile(value):
            raise CliError(f"{value}: neither a file nor a built-in image ({', '.join(PHOTOS)})")
        try:
            arr = np.array(Image.open(value).convert("RGB"), dtype=np.uint8)
        except OSError as e:
            raise CliError(f"{value}: {e}") from None
        return torch.from_numpy(arr).permute(2, 0, 1).float() / 255.0

    if (args.style is None) == (args.model is None):
        raise CliError("give a STYLE image to optimise towards, or --model NAME (a style network)")
    if args.model:
        from genray.cluster.registry import Registry
        from genray.cluster.storage import Storage
        from genray.models.style import StyleNet

        network, rec = Registry(Storage(args.storage)).load(args.model)
        if not isinstance(network, StyleNet):
            raise CliError(f"{rec.ref} is a {rec.config['family']} model, not a style network")
        r = network.transfer(load(args.content), max_side=args.max_side)
    else:
        r = transfer(load(args.content), load(args.style), strength=args.strength, steps=args.steps,
                     max_side=args.max_side, loss=args.loss, seed=args.seed)
    with open(args.output, "wb") as f:
        f.write(to_png(r.image))
    s = r.summary()
    print(f"wrote {args.output} ({r.image.shape[2]}x{r.image.shape[1]}) in {s['seconds']:.1f} s: style distance "
          f"-{100 * s['style_reduction']:.0f}% (-{100 * s['heldout_style_reduction']:.0f}% on the same "
          f"architecture with another seed), content SSIM {s['content_ssim']:.2f}")
    return 0
