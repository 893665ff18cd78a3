"""Pruning trial: cached dense ResNet-18 → NNI filter pruning (dependency-aware) → speed-up →
fine-tune → measure next to the dense model → report to NNI.

    python trials/prune.py --pruner fpgm --sparsity 0.5 --profile smoke
"""

import _path  # noqa: F401

from common.pruning import PRUNERS
from common.trial import base_parser, compression_metrics, parse_params, report_objective, run_main, start_session


def get_parser():
    parser = base_parser(__doc__)
    parser.add_argument("--pruner", default="fpgm", choices=PRUNERS)
    parser.add_argument("--sparsity", type=float, default=0.5, help="fraction of each conv's filters removed")
    return parser


def main() -> None:
    args = parse_params(get_parser())  # checks every parameter: a bad value fails in seconds, before any training
    session = start_session(args)

    dense, _ = session.dense_model("resnet18")
    pruned, info = session.pruned_model("resnet18", args.pruner, args.sparsity, report_epochs=True)

    metrics = compression_metrics(session, pruned, dense)
    metrics["val_acc_before_finetune"] = info["val_acc_before_finetune"]
    report_objective(metrics, args)


if __name__ == "__main__":
    run_main(main)
