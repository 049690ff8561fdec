"""genray summarize: one aspect of a paper (a text file, or - for standard input) by a built-in
extractive method or a registry summarizer, in-process, as POST /v1/summarize does."""
from __future__ import annotations

import sys

from genray.cli.common import CliError


def add_parser(sub, storage, ray) -> None:
    p = sub.add_parser("summarize", parents=[storage], help="summarize a paper's challenge, approach or outcome")
    p.add_argument("model", help="lead | random | textrank | lexrank, or a registry summarizer (sentence-scorer, "
                                 "pointer-generator)")
    p.add_argument("file", help="a UTF-8 text file, or - for standard input")
    p.add_argument("--aspect", default="challenge", help="challenge | approach | outcome | all")
    p.add_argument("--max-sentences", type=int, help="extractive: sentences kept (default 3)")
    p.add_argument("--max-tokens", type=int, help="extractive: whole sentences up to this many words; abstractive: "
                                                  "the summary's length limit")
    p.add_argument("--seed", type=int, default=0, help="random: which sentences")
    p.set_defaults(fn=run)


def run(args) -> int:
    from genray.cluster.registry import Registry
    from genray.cluster.storage import Storage
    from genray.models.summarize import ASPECTS, resolve, split_sentences, summarize

    aspects = ASPECTS if args.aspect == "all" else (args.aspect,)
    if args.aspect != "all" and args.aspect not in ASPECTS:
        raise CliError(f"--aspect must be one of {', '.join(ASPECTS)} or all, not {args.aspect!r}")
    if args.max_sentences is not None and args.max_tokens is not None:
        raise CliError("give --max-sentences or --max-tokens, not both")
    try:
        text = sys.stdin.read() if args.file == "-" else open(args.file, encoding="utf-8").read()
    except (OSError, UnicodeDecodeError) as e:
        raise CliError(f"{args.file}: {e}") from None
    sentences = split_sentences(text)
    if not sentences:
        raise CliError(f"{args.file} has no sentences")
    registry = Registry(Storage(args.storage))
    method, _, extractor = resolve(args.model, registry.load)
    max_sentences = args.max_sentences or (3 if args.max_tokens is None else None)
    for aspect in aspects:
        out = summarize(method, sentences, aspect, max_sentences, args.max_tokens, args.seed, extractor)
        print(f"{aspect}: {out['summary']}" if len(aspects) > 1 else out["summary"])
    return 0
