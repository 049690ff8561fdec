"""The composer behind POST /v1/compose: four-part chorales by the rules of tonal harmony
(models/composition), checked by music21 as they are made, on a deployment of its own so that a
burst of compositions queues here rather than in front of generation."""
from __future__ import annotations

import asyncio
import base64

from ray import serve

from genray.models.codecs.music import mix_wav
from genray.models.composition import analysis, theory
from genray.services.generate import error_result

BPM = 72.0


def compose(request: dict) -> dict:
    """The answer to a ComposeRequest's fields: the chorale, MIDI (and WAV), and its analysis;
    or an error result (an unknown key, a melody no chord fits: 422 naming the field)."""
    try:
        chorale = theory.compose(request.get("key", "C"), request.get("bars", 8), request.get("seed"),
                                 request.get("melody"))
        report = analysis.check(chorale.to_stream(BPM), request.get("key", "C"))
    except Exception as e:  # noqa: BLE001 - every failure becomes this caller's error result
        return error_result(e)
    voices = chorale.events()
    return {"key": chorale.key.name, "voices": voices, "chords": list(chorale.chords),
            "midi": base64.b64encode(chorale.to_midi(BPM)).decode(),
            "wav": base64.b64encode(mix_wav(list(voices.values()), BPM)).decode() if request.get("wav") else None,
            "analysis": {"parallel_fifths": report.parallel_fifths, "parallel_octaves": report.parallel_octaves,
                         "range_violations": report.range_violations, "crossings": report.crossings,
                         "key": report.key, "key_agrees": report.key_agrees}}


@serve.deployment
class ComposeServer:
    async def compose(self, request: dict) -> dict:
        return await asyncio.to_thread(compose, request)  # music21's analysis takes tens of ms
