"""Pruning trial: cached dense ResNet-18 → NNI filter pruning (dependency-aware) → speed-up →
fine-tune → measure next to the dense model → report to NNI.

    python trials/prune.py --pruner fpgm --sparsity 0.5 --profile smoke
"""

import copy

import _path  # noqa: F401

from common.pruning import PRUNERS, prune_model, validate
from common.trial import base_parser, compression_metrics, parse_params, report_final, run_main, start_session


def get_parser():
    parser = base_parser(__doc__)
    parser.add_argument("--pruner", default="fpgm", choices=PRUNERS)
    parser.add_argument("--sparsity", type=float, default=0.5, help="fraction of each conv's filters removed")
    return parser


def main() -> None:
    args = parse_params(get_parser())
    validate(args.pruner, args.sparsity)  # before any training: a bad value must fail in seconds
    session = start_session(args)

    dense, _ = session.dense_model("resnet18")
    dense_acc = session.accuracy(dense)
    pruned, stats = prune_model(copy.deepcopy(dense).cpu(), args.pruner, args.sparsity, session.example_input)
    pruned = pruned.to(session.device)
    before = session.accuracy(pruned)
    print(f"pruned {stats.pruner} {stats.sparsity:.2f}: params x{stats.params_ratio:.3f}, "
          f"FLOPs x{stats.flops_ratio:.3f}, val_acc before fine-tune {before['val_acc']:.4f}", flush=True)
    session.finetune(pruned)

    metrics = compression_metrics(session, pruned, dense, dense_acc)
    metrics["val_acc_before_finetune"] = before["val_acc"]
    report_final(metrics["val_acc"], metrics, args)


if __name__ == "__main__":
    run_main(main)
