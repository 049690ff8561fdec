"""What the commands share: the user-error type, option parents, --set parsing, and running a
service capability in-process."""
from __future__ import annotations

import argparse
import json


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


def storage_parent() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--storage", default=None, help="storage root: a path or a URI (default $GENRAY_HOME or ~/.genray)")
    return p


def ray_parent() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--address", default=None,
                   help="Ray cluster to join (default $RAY_ADDRESS, else an embedded local one)")
    p.add_argument("--verbose", action="store_true",
                   help="show Ray's own logs and the workers' output on the console (else they go to Ray's "
                        "log folder, printed once)")
    return p


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def key_values(pairs: list[str] | None, flag: str) -> dict:
    """KEY=VALUE pairs (values parsed as JSON where they are JSON) -> a dict."""
    out = {}
    for p in pairs or []:
        key, eq, value = p.partition("=")
        if not eq or not key:
            raise CliError(f"{flag} expects KEY=VALUE, got {p!r}")
        out[key] = _parse_value(value)
    return out


def run_capability(capability: str, storage_uri: str, model: str | None, body: dict):
    """A capability's answer (services/capabilities/) to a request body, run in this process on
    registry model `model` (NAME or NAME@VERSION; None: the capability's built-in), validated and
    checked exactly as the HTTP endpoint does it; a CliError naming the field for bad input."""
    from pydantic import ValidationError

    from genray.cluster.registry import Registry
    from genray.cluster.storage import Storage
    from genray.services.spec import SPECS, Failure, Job, execute
    from genray.services.workbench import Workbench

    spec = SPECS[capability]
    try:
        req = spec.request.model_validate(body)
    except ValidationError as e:
        raise CliError("; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())) from None
    storage = Storage(storage_uri)
    rec = Registry(storage).record(model) if model else None
    config = rec.config if rec else spec.builtins[next(iter(spec.builtins))]["config"]
    errors = spec.check(req, config)
    if errors:
        raise CliError("; ".join(f"{err['loc'][-1]}: {err['msg']}" for err in errors))
    name = rec.name if rec else next(iter(spec.builtins))
    out = execute(spec, Job(Workbench(storage.uri, {name: rec.ref} if rec else {}), name, rec.ref if rec else None),
                  req)
    if isinstance(out, Failure):
        raise CliError(f"{out.field}: {out.message}" if out.field else out.message)
    return out
