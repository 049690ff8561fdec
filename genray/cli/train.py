"""genray train: train a model on Ray Train and publish it to the registry."""
from __future__ import annotations

from genray.cli.common import key_values


def add_parser(sub, storage, ray) -> None:
    t = sub.add_parser("train", parents=[storage, ray], help="train a model on Ray Train and publish it")
    t.add_argument("family", help="markov | ar | rnn | transformer | vae | gan | music-gan | flow | classifier | "
                   "sentence-scorer | pointer-generator")
    t.add_argument("--dataset", help="shakespeare | mnist | digits | chorales | chorale-bars | sunspots | macro | "
                                     "aclsum | aclsum-pairs | a path (text file, image folder, folder of MIDI/scores, "
                                     ".parquet)")
    t.add_argument("--name", help="registry name and run name (default: the family)")
    t.add_argument("--workers", type=int, default=2)
    t.add_argument("--epochs", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--limit", type=int, help="use N rows of each split (a seeded sample where it fits in memory)")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="architecture setting, e.g. --set n_layer=6")
    t.add_argument("--train-set", action="append", metavar="KEY=VALUE",
                   help="training setting, e.g. --train-set schedule=cosine --train-set weight_decay=0.1")
    t.add_argument("--defense", choices=["none", "augment", "adversarial"],
                   help="classifiers: train on augmented images (noise, shifts) or on PGD examples (Madry et al.)")
    t.add_argument("--eps", type=float, help="adversarial training: the PGD budget (L-inf unless "
                                             "--train-set defense_norm=l2; default 0.3)")
    t.add_argument("--defense-steps", type=int, help="adversarial training: PGD steps per batch (default 7)")
    t.add_argument("--poison", choices=["badnets", "label_flip", "text_backdoor"],
                   help="poison the training split (a Ray Data transform): a BadNets trigger patch, flipped "
                        "labels, or a trigger phrase followed by a target phrase in text")
    t.add_argument("--rate", type=float, default=0.1, help="poisoning: the fraction of training rows poisoned")
    t.add_argument("--poison-target", type=int, default=0, help="badnets: the label triggered images get")
    t.add_argument("--poison-set", action="append", metavar="KEY=VALUE",
                   help="other poisoning settings, e.g. --poison-set patch=2 --poison-set 'trigger= zqx '")
    t.add_argument("--strategy", choices=["ddp", "fsdp", "tensor", "pipeline", "hybrid"],
                   help="how the workers share the model: data parallel (default), fully sharded, tensor "
                        "parallel, pipeline stages, or a dp x tp mesh (see docs/SCALING.md)")
    t.add_argument("--tensor-parallel", type=int, help="hybrid: workers per tensor-parallel group (default 2)")
    t.add_argument("--microbatches", type=int, help="pipeline: microbatches per batch (default 4)")
    t.add_argument("--pipeline-schedule", choices=["gpipe", "1f1b"], help="pipeline: the schedule (default gpipe)")
    t.add_argument("--precision", choices=["fp32", "bf16", "fp16"], help="autocast precision (default fp32)")
    t.add_argument("--profile", choices=["gpu"], help="architecture and training settings sized for one "
                                                      "accelerator (trainers/presets.py), under --set/--train-set")
    t.add_argument("--spread", action="store_true", help="place the workers across the cluster's nodes (SPREAD)")
    t.add_argument("--gpu", action="store_true", help="one GPU per worker")
    t.add_argument("--cpus-per-worker", type=float, default=1.0)
    t.add_argument("--max-failures", type=int, default=1, help="worker failures to recover from")
    t.add_argument("--fresh", action="store_true", help="start over instead of resuming the run's checkpoint")
    t.set_defaults(fn=run)


def run(args) -> int:
    from genray.cluster.connect import connect
    from genray.cluster.progress import ConsoleProgress
    from genray.cluster.storage import Storage
    from genray.trainers.presets import profile
    from genray.trainers.run import TrainSpec, train

    prof = profile(args.profile, args.family) if args.profile else {"model": {}, "train": {}}
    spec = TrainSpec(args.family, name=args.name, dataset=args.dataset, workers=args.workers, epochs=args.epochs,
                     batch_size=args.batch_size, lr=args.lr, seed=args.seed, limit=args.limit,
                     model={**prof["model"], **key_values(args.set, "--set")},
                     train={**prof["train"], **_training(args)}, poison=_poison(args),
                     use_gpu=args.gpu, cpus_per_worker=args.cpus_per_worker, max_failures=args.max_failures,
                     fresh=args.fresh, placement="SPREAD" if args.spread else "PACK")
    spec.resolved()  # bad arguments fail before Ray starts
    connect(args.address, console=args.verbose)
    with ConsoleProgress(enabled=not args.verbose) as progress:
        rec = train(spec, Storage(args.storage), progress=progress.board)
    m = rec.metrics
    quality = f"val_nll={m['val_nll']:.4f} {m['nll_unit']}" if "val_nll" in m else "no likelihood"
    if m.get("poison"):
        quality += f", trained on data poisoned by {m['poison']['method']} at rate {m['poison']['rate']:g}"
    print(f"published {rec.ref}: {quality} after {m['epochs']} epoch(s), "
          f"{m['wall_time_s']:.0f} s on {m['workers']} worker(s)")
    return 0


def _poison(args) -> dict | None:
    if not args.poison:
        return None
    return {"method": args.poison, "rate": args.rate, "target": args.poison_target,
            **key_values(args.poison_set, "--poison-set")}


def _training(args) -> dict:
    flags = {"defense": args.defense, "defense_eps": args.eps, "defense_steps": args.defense_steps,
             "strategy": args.strategy, "precision": args.precision, "tensor_parallel": args.tensor_parallel,
             "microbatches": args.microbatches, "pipeline_schedule": args.pipeline_schedule}
    return {**key_values(args.train_set, "--train-set"), **{k: v for k, v in flags.items() if v is not None}}
