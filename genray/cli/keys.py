"""genray keys: the API keys the HTTP service accepts, kept as salted hashes."""
from __future__ import annotations

from genray.cli.common import CliError


def add_parser(sub, storage, ray) -> None:
    c = sub.add_parser("keys", parents=[storage], help="add, list or remove the HTTP API's keys")
    c.add_argument("action", choices=("add", "list", "remove"))
    c.add_argument("name", nargs="?", help="the key's name (add, remove)")
    c.add_argument("--scopes", default="generate", help="comma-separated: generate, attack, explain, admin")
    c.add_argument("--rate", type=float, help="requests per second allowed to this key (default: no limit)")
    c.add_argument("--burst", type=int, help="requests allowed at once above the rate (default: the rate)")
    c.add_argument("--keys-file", help="the file of hashed keys (default: keys.json in the storage root)")
    c.set_defaults(fn=run)


def keys_path(args) -> str:
    from genray.cluster.storage import Storage
    from genray.services.auth import KEYS_FILE

    if args.keys_file:
        return args.keys_file
    storage = Storage(args.storage)
    if not storage.is_local:
        raise CliError("keys live in a local file: pass --keys-file PATH for a remote storage")
    return storage.path(KEYS_FILE)


def run(args) -> int:
    from genray.services import auth

    path = keys_path(args)
    if args.action == "list":
        for e in auth.read_file(path):
            rate = f"{e.rate_per_s:g}/s burst {e.burst or 'rate'}" if e.rate_per_s else "no rate limit"
            print(f"{e.name:20s} {','.join(e.scopes):32s} {rate}")
        return 0
    if not args.name:
        raise CliError(f"keys {args.action} needs a NAME")
    if args.action == "remove":
        entries = auth.read_file(path)
        if not any(e.name == args.name for e in entries):
            raise CliError(f"no key named {args.name!r} in {path}")
        auth.write_file(path, [e for e in entries if e.name != args.name])
        print(f"removed {args.name}")
        return 0
    try:
        key = auth.add_key(path, args.name, [s.strip() for s in args.scopes.split(",") if s.strip()],
                           args.rate, args.burst)
    except ValueError as e:
        raise CliError(str(e)) from None
    print(f"{key}\n(the key for {args.name!r}, scopes {args.scopes}: it is shown once; {path} keeps only its hash)")
    return 0
