"""genray serve: serve registry models over HTTP with Ray Serve until Ctrl-C or SIGTERM."""
from __future__ import annotations

import logging
import os
import signal
import threading


def add_parser(sub, storage, ray) -> None:
    c = sub.add_parser("serve", parents=[storage, ray], help="serve registry models over HTTP with Ray Serve")
    add_http_options(c)
    c.add_argument("--models", nargs="*", help="NAME or NAME@VERSION (default: the latest of every generative model "
                                               "and classifier)")
    c.set_defaults(fn=run)


def add_http_options(c) -> None:
    c.add_argument("--host", default="127.0.0.1")
    c.add_argument("--port", type=int, default=8000)
    c.add_argument("--max-replicas", type=int, default=2, help="autoscaling limit per model")
    c.add_argument("--gpus-per-replica", type=float, default=0.0,
                   help="GPUs per model replica (e.g. 0.25: four replicas share a card); the models run on CUDA")
    c.add_argument("--keys-file", help="API keys as salted hashes (default: keys.json in the storage root; "
                                       "`genray keys add` writes it). GENRAY_API_KEYS=KEY=scope+scope adds keys")
    c.add_argument("--no-auth", action="store_true", help="serve anyone who reaches the port, without a key")


def run(args) -> int:
    from genray.cluster.connect import connect
    from genray.cluster.storage import Storage

    connect(args.address, console=args.verbose)
    return serve_forever(args, Storage(args.storage), args.models)


def examples(port: int, names: list[str], auth: bool = True) -> str:
    """curl calls for the models served, as the README shows them."""
    base = f"http://127.0.0.1:{port}"
    key = ' -H "Authorization: Bearer $GENRAY_KEY"' if auth else ""
    post = f"curl -s -X POST {base}/v1/generate/{{}}{key} -H 'content-type: application/json' -d '{{}}'"
    lines = [f"curl -s {base}/v1/models{key}", f"curl -s {base}/healthz", f"curl -s {base}/metrics{key} | grep genray_"]
    for image_model, body in (("vae", '{"n": 4, "label": 7, "seed": 1}'), ("gan", '{"n": 4, "label": 3, "seed": 1}'),
                              ("flow", '{"n": 4, "temperature": 0.7, "seed": 1}')):
        if image_model in names:
            lines.append(post.format(image_model, body))
    for text_model in ("transformer", "rnn", "markov"):
        if text_model in names:
            body = '{"prompt": "ROMEO:", "max_tokens": 200, "temperature": 0.8, "seed": 1}'
            lines.append(post.format(text_model, body))
    if "ar" in names:
        lines.append(post.format("ar", '{"prompt": [30, 60, 110, 150, 120, 80, 40, 20, 10, 15], "max_tokens": 12, '
                                       '"seed": 1}'))
    if "classifier" in names:
        lines.append(post.format("classifier", '{"method": "pgd", "eps": 0.3, "steps": 40, "indices": [0, 1, 2, 3]}')
                     .replace("/v1/generate/", "/v1/attack/"))
    for defender, body in (("flow", '{"method": "detect", "indices": [0, 1, 2, 3]}'),
                           ("vae", '{"method": "purify", "indices": [0, 1, 2, 3]}')):
        if defender in names:
            lines.append(post.format(defender, body).replace("/v1/generate/", "/v1/defend/"))
    explain = post.replace("/v1/generate/", "/v1/explain/")
    if "classifier" in names:
        lines.append(explain.format("classifier", '{"method": "ig", "indices": [0], "format": "png"}')
                     + " -o digit-ig.png")
    if "transformer" in names:
        lines.append(explain.format("transformer", '{"method": "ig", "prompt": "ROMEO:\\nWhat say you, my lo", '
                                                   '"evaluate": true}'))
    if "chorale-rnn" in names:
        lines.append(post.format("chorale-rnn", '{"prompt": "G4/1 G4/1 D5/1", "max_tokens": 64, "seed": 1}')
                     + " | python3 -c 'import sys, json, base64; s = json.load(sys.stdin)[\"samples\"][0]; "
                       "print(s[\"events\"]); open(\"chorale.mid\", \"wb\").write(base64.b64decode(s[\"midi\"]))'")
    return "\n".join(lines)


def _local_key(storage, options) -> str | None:
    """With auth on and no key configured, a fresh all-scope key named "local" for this
    machine, which the operator is shown once (as Jupyter shows its token)."""
    from genray.services import auth
    from genray.services.app import api_keys

    if not options.auth or not storage.is_local:
        return None
    path = options.keys_file or storage.path(auth.KEYS_FILE)
    others = [e for e in auth.read_file(path) if e.name != "local"] + auth.from_env(os.environ.get(auth.ENV))
    if others:
        api_keys(storage, options)  # refuses early if the configured keys do not load
        return None
    return auth.add_key(path, "local", list(auth.SCOPES))


class Service:
    """The `genray` Serve application on this process's Ray: deployed, redeployed as models join
    (`models` None: every servable model in the registry), then stopped."""

    def __init__(self, args, storage, refs: list[str] | None, expected: int | None = None,
                 only: list[str] | None = None):
        from genray.services.app import ServeOptions, default_cpus

        # only: serve these names, those of them published so far, at each deploy
        self.args, self.storage, self.refs, self.only = args, storage, refs, only
        # Fixed CPUs per replica when more models will join, so that redeploying does not resize
        # (and restart) the replicas already serving.
        self.options = ServeOptions(max_replicas=args.max_replicas, gpus_per_replica=args.gpus_per_replica,
                                    auth=not args.no_auth, keys_file=args.keys_file,
                                    cpus_per_replica=default_cpus(expected) if expected else None)
        self.local_key = _local_key(storage, self.options)

    def deploy(self, pending: dict[str, dict] | None = None) -> list[str]:
        """(Re)deploys the app; returns the names served."""
        from ray import serve

        from genray.cluster.registry import Registry
        from genray.services.app import deploy, endpoints

        refs = self.refs
        if self.only is not None:
            refs = [n for n in self.only if n in Registry(self.storage).names()]
        quiet = not self.args.verbose  # Serve's progress lines on this process's console
        if quiet:
            logging.getLogger("ray.serve").setLevel(logging.WARNING)
        serve.start(http_options={"host": self.args.host, "port": self.args.port})
        if quiet:  # serve.start configures its logger anew
            logging.getLogger("ray.serve").setLevel(logging.WARNING)
        deploy(self.storage.uri, refs, self.options, pending)
        served = [r.name for r in Registry(self.storage).list() if endpoints(r, self.options.extras)]
        return refs if refs is not None else served

    def banner(self, names: list[str], pending: list[str] = ()) -> str:
        out = f"\ngenray is serving {', '.join(names) or 'no model yet'} on http://{self.args.host}:{self.args.port}"
        out += "  (Ctrl-C stops)\n" + (f"still training: {', '.join(pending)}\n" if pending else "")
        if self.local_key:
            out += (f"\nAPI key for this machine (all scopes; replaced at each start without other keys):\n"
                    f"  export GENRAY_KEY={self.local_key}\n")
        return out + "\n" + examples(self.args.port, list(names) + list(pending), self.options.auth)

    def stop(self) -> None:
        import ray

        from genray.services.app import undeploy

        print("\nstopping genray ...", flush=True)
        if self.args.address or os.environ.get("RAY_ADDRESS"):
            undeploy("genray")  # leave a shared cluster's other applications running
        else:
            ray.shutdown()  # the embedded cluster goes with its process


class StopSignal(threading.Event):
    """Set by SIGINT or SIGTERM (installed first: a signal while the app deploys still ends in a
    clean shutdown). With interrupt, the signal also raises KeyboardInterrupt in the
    main thread, so that it ends a training run under way."""

    def __init__(self, interrupt: bool = False):
        super().__init__()
        self.interrupt = interrupt
        self.install()

    def _handler(self, *_) -> None:
        self.set()
        if self.interrupt:
            raise KeyboardInterrupt

    def install(self) -> None:
        """(Re)installs the handlers: Ray Train's fit installs a SIGINT handler of its own and
        leaves it behind, where a later Ctrl-C would only abort the finished run."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handler)


def serve_forever(args, storage, refs: list[str] | None) -> int:
    stop = StopSignal()
    service = Service(args, storage, refs)
    print(service.banner(service.deploy()), flush=True)
    while not stop.wait(1.0):
        pass
    service.stop()
    return 0
