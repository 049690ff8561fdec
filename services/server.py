"""The deployment behind every capability (services/spec.py): one per capability, autoscaled, with
the spec's queue limits, so that a burst of slow requests (attacks, explanations, style transfers)
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
    """Runs one capability's requests on the registry models it was given (served name -> ref),
    loaded once per replica."""

    def __init__(self, storage_uri: str, capability: str, refs: dict[str, str], threads: int = 1):
        torch.set_num_threads(threads)
        self.spec = SPECS[capability]
        self.bench = Workbench(storage_uri, refs)

    async def run(self, model: str, req):
        """The answer to a parsed, checked request for the served name `model`, or its Failure."""
        job = Job(self.bench, model, self.bench.refs.get(model))
        if not self.spec.limits.threaded:
            # One request at a time per replica: computing in the loop blocks nobody.
            return execute(self.spec, job, req)
        abandoned = threading.Event()
        job.cancelled = abandoned.is_set
        try:
            return await asyncio.to_thread(execute, self.spec, job, req)
        except asyncio.CancelledError:  # the caller timed out or went away: stop working for it
            abandoned.set()
            raise
