"""The theory-based SATB composer and harmoniser, and the music21 rule checker that scores it (no Ray)."""
import pytest

from genray.models.codecs.music import parse_event
from genray.models.composition import analysis, theory
from genray.models.errors import InputError

# I-IV-V-I in C, voiced by the book: no parallels, no crossings, every note in range.
CLEAN = [("C5", "G4", "E4", "C3"), ("C5", "A4", "F4", "F3"), ("B4", "G4", "D4", "G3"), ("C5", "G4", "E4", "C3")]
# Planted: S-B C5/F3 -> D5/G3, a twelfth to a twelfth (one parallel fifth); then S-T D5/D4 -> C5/C4
# (one parallel octave). No other pair of voices moves between perfect intervals.
PLANTED = [("C5", "A4", "F4", "F3"), ("D5", "B4", "D4", "G3"), ("C5", "E4", "C4", "A2")]
MELODY = ["G4/1", "G4/1", "D5/1", "R/0.5", "B4/0.5", "A4/1.5", "F#4/0.25", "G4/2"]  # G major, with a rest


def score(chords, names=theory.VOICES, ql=1.0):
    from music21 import note, stream

    s = stream.Score()
    for v, name in enumerate(names):
        part = stream.Part()
        part.partName = name
        for chord in chords:
            part.append(note.Note(chord[v], quarterLength=ql))
        s.insert(0, part)
    return s


def test_checker_counts_exactly_the_planted_parallels():
    clean = analysis.check(score(CLEAN), "C")
    assert (clean.parallel_fifths, clean.parallel_octaves, clean.range_violations, clean.crossings) == (0, 0, 0, 0)
    assert clean.verticalities == 4 and clean.key_agrees
    planted = analysis.check(score(PLANTED))
    assert (planted.parallel_fifths, planted.parallel_octaves) == (1, 1)
    assert (planted.range_violations, planted.crossings, planted.key_agrees) == (0, 0, None)
    # The same fifth between alto and bass (tenor moved out of the way), and a parallel unison.
    both = analysis.check(score([("E5", "C4", "A3", "F3"), ("F5", "D4", "D4", "G3"), ("G5", "E4", "E4", "C3")]))
    assert (both.parallel_fifths, both.parallel_octaves) == (1, 1)


def test_checker_counts_ranges_and_crossings_and_finds_voices_by_name():
    # Bass D2 and soprano A5 are out of range; the alto sounds below the tenor in the first chord.
    s = analysis.check(score([("A5", "C4", "E4", "D2"), ("G5", "G4", "E4", "E3")]))
    assert (s.range_violations, s.crossings, s.parallels) == (2, 1, 0)
    # Parts are chosen by name, not order (a horn above the soprano is skipped).
    order = ("Bass", "Tenor", "Alto", "Soprano")
    reordered = score([c[::-1] for c in PLANTED], names=order)
    assert (analysis.check(reordered).parallel_fifths, analysis.check(reordered).parallel_octaves) == (1, 1)
    assert analysis.four_parts(score(CLEAN, names=("Horn", "Alto", "Tenor", "Bass"))) is None
    with pytest.raises(ValueError, match="Soprano"):
        analysis.check(score(CLEAN, names=("Horn", "Alto", "Tenor", "Bass")))


def leading_tones(chorale) -> tuple[int, int]:
    """(unresolved, resolved) leading tones where a dominant moves to a chord with the tonic; resolved
    means that the voice rises a semitone."""
    lead, counts = (chorale.key.tonic + 11) % 12, [0, 0]
    rows, chords = chorale.pitches(), chorale.chords
    for t in range(len(rows) - 1):
        if chords[t] in theory.DOMINANTS and chords[t + 1] is not None \
                and chorale.key.tonic in theory.chord_tones(chorale.key, chords[t + 1]):
            for v in range(4):
                if rows[t][v] % 12 == lead:
                    counts[rows[t + 1][v] == rows[t][v] + 1] += 1
    return counts[0], counts[1]


@pytest.mark.parametrize("key,seed", [("C", 0), ("a", 1), ("Bb", 2), ("f#", 3), ("E major", 4), ("c minor", 5)])
def test_composed_chorales_keep_the_rules_and_the_key(key, seed):
    chorale = theory.compose(key, 8, seed=seed)
    k = theory.parse_key(key)
    report = analysis.check(chorale.to_stream(), key)
    assert (report.parallel_fifths, report.parallel_octaves, report.range_violations, report.crossings) == (0, 0, 0, 0)
    assert report.key_agrees, report.key
    events = chorale.events()
    assert set(events) == set(theory.VOICES)
    assert sum(parse_event(e)[1] for e in events["Soprano"]) == 32  # 8 bars of 4/4
    assert all(sum(parse_event(e)[1] for e in evs) == 32 for evs in events.values())
    # A perfect authentic cadence: V(7)-I, both in root position, the soprano on the tonic.
    tonic = "i" if k.minor else "I"
    assert chorale.chords[-2] in ("V", "V7") and chorale.chords[-1] == tonic
    before, last = chorale.pitches()[-2:]
    assert last[0] % 12 == last[3] % 12 == k.tonic and before[3] % 12 == (k.tonic + 7) % 12
    unresolved, resolved = leading_tones(chorale)
    assert unresolved == 0 and resolved >= 1  # the final cadence has one at least
    lead = (k.tonic + 11) % 12
    assert all(sum(p % 12 == lead for p in row) <= 1 for row in chorale.pitches())  # never doubled


def test_same_seed_same_chorale_and_midi():
    a, b, c = theory.compose("G", 4, seed=7), theory.compose("G", 4, seed=7), theory.compose("G", 4, seed=8)
    assert a == b and a.events() != c.events()
    data = a.to_midi()
    assert data[:4] == b"MThd" and data == b.to_midi()
    assert [p.partName for p in a.to_stream().parts] == list(theory.VOICES)


def test_scores_are_spelled_in_the_key():
    chorale = theory.compose("Eb", 2, seed=0)
    names = {n.pitch.name for n in chorale.to_stream().flatten().notes}
    assert names <= {"E-", "F", "G", "A-", "B-", "C", "D"} and "E-" in names
    # Events stay in the project's sharps-only format: E-flat is D#, B-flat A#, A-flat G#.
    assert {e.split("/")[0][:-1] for e in chorale.events()["Bass"]} <= {"D#", "F", "G", "G#", "A#", "C", "D"}


def test_harmonised_melody_keeps_the_soprano_and_the_rules():
    chorale = theory.compose("G", 8, melody=MELODY)
    assert chorale.events()["Soprano"] == MELODY
    events = chorale.events()
    for voice in ("Alto", "Tenor", "Bass"):
        assert [e.split("/")[1] for e in events[voice]] == [e.split("/")[1] for e in MELODY]
        assert events[voice][3] == "R/0.5"
    report = analysis.check(chorale.to_stream(), "G")
    assert (report.parallel_fifths, report.parallel_octaves, report.range_violations, report.crossings) == (0, 0, 0, 0)
    assert chorale.chords[-1] == "I" and chorale.pitches()[-1][3] % 12 == 7
    assert leading_tones(chorale)[0] == 0
    # A minor melody with melodic minor's raised sixth and natural seventh (A minor: F#, G).
    minor = theory.compose("a", 1, melody="C5/1 B4/1 A4/1 G4/1 F4/1 E4/1 F#4/1 G#4/1 A4/2")
    report = analysis.check(minor.to_stream(), "a")
    assert (report.parallels, report.range_violations, report.crossings) == (0, 0, 0)
    assert minor.chords[-1] == "i" and leading_tones(minor)[0] == 0
    # A chromatic note takes a secondary dominant (spelled in the key), whose leading tone is not doubled.
    chromatic = theory.compose("G", 1, melody="G4/1 A4/1 C#5/1 D5/1 B4/1 A4/1 G4/2")
    assert chromatic.chords[2] == "V/V" and sum(p % 12 == 1 for p in chromatic.pitches()[2]) == 1
    assert analysis.check(chromatic.to_stream(), "G").parallels == 0
    assert "C#" in {n.pitch.name for n in chromatic.to_stream().flatten().notes}


@pytest.mark.parametrize("key", ["H", "C##", "Fb", "D# major", "c dorian", ""])
def test_bad_keys_are_input_errors(key):
    with pytest.raises(InputError) as e:
        theory.compose(key, 4)
    assert e.value.field == "key"


@pytest.mark.parametrize("bars", [0, 65, -1, 2.5, True, "8"])
def test_bad_bars_are_input_errors(bars):
    with pytest.raises(InputError) as e:
        theory.compose("C", bars)
    assert e.value.field == "bars"


@pytest.mark.parametrize("melody,why", [(["C4/1", "G3/1"], "range"), (["C5"], "bad melody event"),
                                        (["C5/1", "D#5/1", "E5/1"], "no chord"), (["R/1"], "no notes"),
                                        (["C5/1"] * 513, "at most 512")])
def test_bad_melodies_are_input_errors(melody, why):
    with pytest.raises(InputError, match=why) as e:
        theory.compose("C", 4, melody=melody)
    assert e.value.field == "melody"


def test_genray_compose_prints_or_writes_the_chorale_and_names_bad_input(tmp_path, capsys):
    from genray.cli import main as cli

    assert cli(["compose", "--key", "Bb", "--bars", "2", "--seed", "4"]) == 0
    out, err = capsys.readouterr()
    voices = {line.split()[0]: line.split()[1:] for line in out.splitlines()}
    assert list(voices) == ["Soprano", "Alto", "Tenor", "Bass", "chords"]
    assert voices["chords"][-1] == "I" and "0 parallel fifths" in err and "key B- major" in err
    midi = tmp_path / "c.mid"
    assert cli(["compose", "--key", "Bb", "--bars", "2", "--seed", "4", "-o", str(midi)]) == 0
    assert midi.read_bytes()[:4] == b"MThd"
    assert cli(["compose", "--key", "H"]) == 2 and "unknown key 'H'" in capsys.readouterr().err
    assert cli(["compose", "--bars", "0"]) == 2 and "bars" in capsys.readouterr().err
