"""genray sample: generate from a registry model in-process, with the HTTP API's checks."""
from __future__ import annotations

import sys

from genray.cli.common import CliError


def add_parser(sub, storage, ray) -> None:
    s = sub.add_parser("sample", parents=[storage], help="generate from a registry model in-process")
    s.add_argument("model", help="NAME or NAME@VERSION")
    s.add_argument("-n", type=int, default=1)
    s.add_argument("-o", "--output", help="output file: PNG grid for images, FILE.mid or FILE.wav for music, "
                                          "text otherwise (default stdout)")
    s.add_argument("--seed", type=int)
    s.add_argument("--prompt", help="text; music events ('G4/1 A4/0.5'); numbers for a series")
    s.add_argument("--max-tokens", type=int)
    s.add_argument("--temperature", type=float)
    s.add_argument("--top-k", type=int)
    s.add_argument("--top-p", type=float, help="nucleus sampling: among the most likely symbols whose "
                                               "probability reaches P")
    s.add_argument("--stop", action="append", help="text: end each sample where this string first appears "
                                                   "(repeatable)")
    s.add_argument("--label", type=int)
    s.set_defaults(fn=run)


def run(args) -> int:
    from pydantic import ValidationError

    from genray.cluster.registry import Registry
    from genray.cluster.storage import Storage
    from genray.models import modalities
    from genray.models.base import seeded
    from genray.services.schemas import GenerateRequest, check_applies

    model, rec = Registry(Storage(args.storage)).load(args.model)
    if rec.kind != "generative":
        raise CliError(f"{rec.ref} is a {rec.kind}, not a generative model")
    modality = modalities.get(model.modality)
    fields = {"n": args.n, "seed": args.seed, "max_tokens": args.max_tokens, "temperature": args.temperature,
              "top_k": args.top_k, "top_p": args.top_p, "stop": args.stop, "label": args.label,
              "prompt": None if args.prompt is None else modality.parse_prompt(args.prompt)}
    try:
        req = GenerateRequest(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as e:
        raise CliError("; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())) from None
    errors = check_applies(req, rec.config)
    if errors:
        raise CliError("; ".join(e["msg"] for e in errors))
    samples = model.sample(req.n, generator=seeded(req.seed), **req.model_dump(exclude_unset=True,
                                                                               exclude={"n", "seed"}))
    if args.output:
        paths = modality.write(samples, args.output)
        print(f"wrote {req.n} samples of {rec.ref} to {', '.join(paths)}")
        return 0
    texts = [modality.to_text(s) for s in samples]
    if None in texts:
        raise CliError(f"{modality.name} samples need -o {modality.file_hint}")
    sys.stdout.write("\n\n".join(texts) + "\n")
    return 0
