"""genray compose: a four-part chorale by the rules of tonal harmony, or a harmonisation of a
melody, in-process (no model to train), checked by music21 as POST /v1/compose checks it."""
from __future__ import annotations

import sys


def add_parser(sub, storage, ray) -> None:
    c = sub.add_parser("compose", help="write a four-part chorale in a key, or harmonise a melody")
    c.add_argument("--key", default="C", help="'C', 'F#', 'Bb' (major), 'a' or 'A minor' (minor)")
    c.add_argument("--bars", type=int, default=8, help="bars of 4/4 (with --melody: its length instead)")
    c.add_argument("--melody", help="a soprano line to harmonise, as events ('G4/1 A4/0.5 R/1')")
    c.add_argument("--seed", type=int)
    c.add_argument("-o", "--output", help="FILE.mid or FILE.wav (default: the voices as text on stdout)")
    c.set_defaults(fn=run)


def run(args) -> int:
    from genray.cli.common import CliError
    from genray.models.codecs.music import mix_wav
    from genray.models.composition import analysis, theory

    chorale = theory.compose(args.key, args.bars, args.seed, args.melody)
    report = analysis.check(chorale.to_stream(), args.key)
    if args.output:
        if not args.output.endswith((".mid", ".wav")):
            raise CliError(f"-o {args.output}: write a .mid or a .wav file")
        data = chorale.to_midi() if args.output.endswith(".mid") else mix_wav(list(chorale.events().values()), 72.0)
        with open(args.output, "wb") as f:
            f.write(data)
        print(f"wrote {len(chorale.chords)} chords in {chorale.key.name} to {args.output}")
    else:
        for voice, events in chorale.events().items():
            sys.stdout.write(f"{voice:<8} {' '.join(events)}\n")
        sys.stdout.write(f"{'chords':<8} {' '.join(c or '-' for c in chorale.chords)}\n")
    print(f"checked by music21: {report.parallel_fifths} parallel fifths, {report.parallel_octaves} parallel "
          f"octaves, {report.range_violations} notes out of range, {report.crossings} crossings; key {report.key}",
          file=sys.stderr)
    return 0
