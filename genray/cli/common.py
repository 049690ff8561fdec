"""What the commands share: the user-error type, option parents, --set parsing."""
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
