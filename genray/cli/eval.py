"""genray eval: held-out metrics of a registry model on its data set's test split (`--split val`
for the validation split that choices are made on), stored in its metrics.json."""
from __future__ import annotations


def add_parser(sub, storage, ray) -> None:
    e = sub.add_parser("eval", parents=[storage], help="held-out NLL (and digit-FID, forecast MSE) of a registry "
                                                       "model, stored in its metrics.json")
    e.add_argument("model", help="NAME or NAME@VERSION")
    e.add_argument("--split", choices=("test", "val"), default="test",
                   help="the held-out split to score: test (reported figures) or val (where choices are made)")
    e.add_argument("--batch-size", type=int, default=256)
    e.set_defaults(fn=run)


def run(args) -> int:
    from genray.cluster.storage import Storage
    from genray.trainers.evaluate import evaluate

    rec = evaluate(args.model, Storage(args.storage), batch_size=args.batch_size, split=args.split)
    r = rec.metrics["eval" if args.split == "test" else "eval_val"]
    parts = []
    if "heldout_nll" in r:
        bpd = f" = {r['heldout_bits_per_dim']:.4f} bits/dim" if "heldout_bits_per_dim" in r else ""
        parts.append(f"held-out NLL {r['heldout_nll']:.4f} {r['nll_unit']}{bpd}")
    if "forecast_mse" in r:
        parts.append(f"one-step forecast MSE {r['forecast_mse']:.4g}")
    if "fid" in r:
        parts.append(f"digit-FID {r['fid']:.2f} ({r['fid_samples']} samples; real images score "
                     f"{r['fid_real_floor']:.2f})")
    if "accuracy" in r:
        parts.append(f"accuracy {r['accuracy']:.4f}")
    if "label_accuracy" in r:
        parts.append(f"label accuracy {r['label_accuracy']:.3f}")
    print(f"{args.model}: {'; '.join(parts)} on {r['rows']} {r['split']} rows of {r['dataset']} "
          f"(stored in metrics.json)")
    return 0
