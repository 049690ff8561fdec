"""The deployment behind every capability (services/spec.py): one per capability (a capability
`part_of` another shares that one's: defend runs beside attack), autoscaled, with the spec's queue
limits, so that a burst of slow requests (attacks, explanations, style transfers)
waits or is refused with a 503 there while generation goes on in its own deployments."""
from __future__ import annotations

import asyncio
import threading

import torch
from ray import serve

from genray.services.spec import SPECS, Job, execute
from genray.services.workbench import Workbench


@serve.deployment
class CapabilityServer:
    """Runs the requests of a capability (and of those `part_of` it: defend with attack) on the
    registry models it was given (served name -> ref), loaded once per replica."""

    def __init__(self, storage_uri: str, capabilities: tuple[str, ...], refs: dict[str, str], threads: int = 1):
        torch.set_num_threads(threads)
        self.specs = {c: SPECS[c] for c in capabilities}
        self.bench = Workbench(storage_uri, refs)

    async def run(self, capability: str, model: str, req):
        """The answer to a parsed, checked request for the served name `model`, or its Failure."""
        spec = self.specs[capability]
        job = Job(self.bench, model, self.bench.refs.get(model))
        if not spec.limits.threaded:
            # One request at a time per replica: computing in the loop blocks nobody.
            return execute(spec, job, req)
        abandoned = threading.Event()
        job.cancelled = abandoned.is_set
        try:
            return await asyncio.to_thread(execute, spec, job, req)
        except asyncio.CancelledError:  # the caller timed out or went away: stop working for it
            abandoned.set()
            raise
