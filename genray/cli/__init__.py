"""The `genray` command line, one module per command.

Every command that needs Ray joins --address / RAY_ADDRESS, or starts an embedded local cluster.
Models, checkpoints and cached data live under --storage / GENRAY_HOME (default ~/.genray).
"""
from __future__ import annotations

import argparse
import sys

from genray.cli import (
    attack,
    compose,
    defend,
    explain,
    inpaint,
    keys,
    models,
    plan,
    sample,
    serve,
    style,
    summarize,
    train,
    tune,
    up,
)
from genray.cli import eval as eval_cmd
from genray.cli.common import CliError, ray_parent, storage_parent

COMMANDS = (train, tune, models, eval_cmd, sample, inpaint, style, compose, summarize, attack, defend, explain, serve,
            plan, up, keys)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="genray", description="Train, sample and serve generative models on Ray.")
    sub = p.add_subparsers(dest="command", required=True)
    storage, ray = storage_parent(), ray_parent()
    for command in COMMANDS:
        command.add_parser(sub, storage, ray)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from genray.cluster.registry import RegistryError
    from genray.models.errors import InputError

    # Only errors that mean bad user input become one line; anything else is a bug and keeps its traceback.
    try:
        return args.fn(args)
    except (CliError, RegistryError, InputError) as e:
        print(f"genray {args.command}: error: {e}", file=sys.stderr)
        return 2


__all__ = ["CliError", "main", "parser"]
