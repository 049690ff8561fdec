"""POST /v1/compose: four-part chorales by the rules of tonal harmony (models/composition), or the
harmonisation of a melody, checked by music21 as they are made (tens of ms each)."""
from __future__ import annotations

import base64
from typing import Any, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from genray.models.codecs.music import mix_wav
from genray.models.composition import analysis, theory
from genray.services.schemas import Answer, Seed
from genray.services.spec import Capability, Limits

BPM = 72.0
COMPOSER = "theory"  # the served name of the rule-based composer


class ComposeRequest(BaseModel):
    """POST /v1/compose: a four-part chorale by the rules of tonal harmony, or a harmonisation."""
    model_config = ConfigDict(extra="forbid")

    key: StrictStr = Field("C", min_length=1, max_length=16, description="'C', 'F#', 'Bb' (major), 'a' or "
                                                                         "'A minor' (minor)")
    bars: StrictInt = Field(8, ge=1, le=64, description="bars of 4/4 (with a melody: its length instead)")
    melody: Optional[Union[StrictStr, list[StrictStr]]] = Field(
        None, max_length=4096, description="a soprano line to harmonise, as events ('G4/1 A4/0.5 R/1'; at most "
                                           "512)")
    seed: Seed = None
    wav: StrictBool = Field(False, description="also return the chorale rendered as a WAV file")


class ComposeResponse(Answer):
    key: str = Field(..., description="the key composed in, e.g. 'F# minor'")
    voices: dict[str, list[str]] = Field(..., description="Soprano, Alto, Tenor and Bass as note events")
    chords: list[Optional[str]] = Field(..., description="the chord under each event (Roman numeral; null at a "
                                                         "rest)")
    midi: str = Field(..., description="the four parts as a base64 MIDI file")
    wav: Optional[str] = Field(None, description="base64 WAV, on request")
    analysis: dict[str, Any] = Field(..., description="music21's check of the result: parallel_fifths, "
                                                      "parallel_octaves, range_violations, crossings, key, "
                                                      "key_agrees")


def run(job, req: ComposeRequest) -> dict:
    """The chorale, MIDI (and WAV) and music21's analysis; an unknown key or a melody no chord fits
    is a 422 naming the field."""
    chorale = theory.compose(req.key, req.bars, req.seed, req.melody)
    report = analysis.check(chorale.to_stream(BPM), req.key)
    voices = chorale.events()
    return {"key": chorale.key.name, "voices": voices, "chords": list(chorale.chords),
            "midi": base64.b64encode(chorale.to_midi(BPM)).decode(),
            "wav": base64.b64encode(mix_wav(list(voices.values()), BPM)).decode() if req.wav else None,
            "analysis": {"parallel_fifths": report.parallel_fifths, "parallel_octaves": report.parallel_octaves,
                         "range_violations": report.range_violations, "crossings": report.crossings,
                         "key": report.key, "key_agrees": report.key_agrees}}


SPEC = Capability(
    name="compose", summary="A four-part chorale in a key, or a harmonisation of a melody (generate scope).",
    request=ComposeRequest, response=ComposeResponse, run=run, in_path=False, builtins={COMPOSER: {"config": {}}},
    method=lambda req, config: "harmonise" if req.melody is not None else "compose",
    limits=Limits(max_ongoing=2, max_queued=16, target_ongoing=2),
)
