"""genray inpaint: fill the hidden pixels of an image with a registry VAE or flow, in-process, as
POST /v1/inpaint does; writes one PNG row: the masked input (hidden pixels grey), each
completion, and with --index the original. With --text and a text model, fill the gap (a run of
underscores) between the two sides, ranked by the model."""
from __future__ import annotations

import os

from genray.cli.common import CliError


def add_parser(sub, storage, ray) -> None:
    p = sub.add_parser("inpaint", parents=[storage], help="complete an image's hidden pixels with a VAE or flow")
    p.add_argument("model", help="NAME or NAME@VERSION of a vae or flow image model (or a text model with --text)")
    p.add_argument("image", nargs="?", help="a PNG of the model's image shape (or --index)")
    p.add_argument("--index", type=int, help="a test row instead of an image: its position in the test split's "
                                             "class-stratified evaluation order (prints PSNR)")
    p.add_argument("--mask", default="center", help="center | top | bottom | left | right | random, or a PNG of "
                                                    "the image's size, white where pixels are missing (default "
                                                    "center)")
    p.add_argument("--fraction", type=float, default=0.5, help="random: the share of pixels hidden")
    p.add_argument("--method", help="vae: latent (default) | gibbs; flow: map (default) | langevin")
    p.add_argument("-n", type=int, default=1, help="completions")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--label", type=int, help="class-conditional vae: the class to complete")
    p.add_argument("-o", "--output", default="inpainted.png", help="the PNG to write (default inpainted.png)")
    p.add_argument("--text", help="text models: a text with a gap of underscores, e.g. 'To be, or ___ to be'")
    p.add_argument("--length", type=int, help="--text: characters to fill (default: the gap's length)")
    p.add_argument("--candidates", type=int, default=32, help="--text: fills drawn from the left side")
    p.set_defaults(fn=run)


def run(args) -> int:
    import torch

    from genray.cluster.datacache import evaluation_rows
    from genray.cluster.registry import Registry
    from genray.cluster.storage import Storage
    from genray.models.codecs.images import from_png, grid, to_png
    from genray.models.inpaint import MASKS, inpaint, make_mask, mask_from_png, masked_psnr, methods_of, per_image

    storage = Storage(args.storage)
    if args.text is not None:
        return _infill(storage, args)
    model, rec = Registry(storage).load(args.model)
    methods_of(model)
    C, H, W = model.shape
    if (args.image is None) == (args.index is None):
        raise CliError("give an IMAGE or --index N (a test row), not both")
    if args.index is not None:
        val = evaluation_rows(rec, storage, "test")["image"]
        if not 0 <= args.index < len(val):
            raise CliError(f"--index must be in [0, {len(val)})")
        image = val[args.index][None].float() / 255.0
    else:
        image = _read_png(args.image, from_png, C, H, W)[None].float() / 255.0
    if args.mask in MASKS:
        mask = make_mask(args.mask, H, W, fraction=args.fraction, seed=args.seed)
    else:
        if not os.path.isfile(args.mask):
            raise CliError(f"--mask {args.mask}: neither one of {list(MASKS)} nor a file")
        with open(args.mask, "rb") as f:
            mask = mask_from_png(f.read(), H, W)
    out = inpaint(model, image, mask, method=args.method, steps=args.steps, n=args.n, seed=args.seed,
                  label=args.label)[0]  # (n, C, H, W)
    shown = torch.where(mask, torch.full_like(image, 0.5), image)  # (1, C, H, W)
    tiles = [shown, out] + ([image] if args.index is not None else [])
    with open(args.output, "wb") as f:
        f.write(to_png(grid(torch.cat(tiles), ncol=sum(len(t) for t in tiles))))
    line = f"wrote the masked input and {args.n} completion(s) by {rec.ref} to {args.output}"
    if args.index is not None:
        psnr = masked_psnr(out, image.expand_as(out), per_image(mask, len(out)))
        line += "; PSNR on the hidden pixels: " + ", ".join(f"{p:.2f} dB" for p in psnr.tolist())
    print(line)
    return 0


def _read_png(path: str, from_png, C: int, H: int, W: int):
    try:
        with open(path, "rb") as f:
            return from_png(f.read(), channels=C, size=(W, H))
    except (OSError, ValueError) as e:
        raise CliError(f"{path}: {e}; the model takes images of {W}x{H} pixels") from None


def _infill(storage, args) -> int:
    """POST /v1/infill's capability, run in this process; each fill printed in brackets."""
    import re

    from genray.cli.common import run_capability

    body = {"text": args.text, "candidates": args.candidates, "seed": args.seed,
            **({"length": args.length} if args.length is not None else {})}
    fills = run_capability("infill", storage.uri, args.model, body)["fills"]
    gap = re.search(r"_{2,}", args.text)  # found: the capability's check requires it
    for f in fills:
        print(f"{f['log_prob']:10.2f}  {args.text[:gap.start()]}[{f['fill']}]{args.text[gap.end():]}")
    return 0
