"""Pruning trial: cached dense model (`--model`, ResNet-18 by default) → NNI filter pruning (dependency-aware) →
speed-up → fine-tune → measure next to the dense model → report to NNI.

    python trials/prune.py --pruner fpgm --sparsity 0.5 --profile smoke
    python trials/prune.py --pruner fpgm --sparsity 0.5 --prune-schedule gradual --prune-steps 3   # 3 rounds
    python trials/prune.py --pruner fpgm --stage-sparsity 0.2,0.4,0.6,0.7                          # per stage
"""

from common import stagewise
from common.pruning import add_pruning_arguments
from common.stages import dense_stage, pruned_stage
from common.trial import (
    base_parser,
    compression_metrics,
    parse_params,
    report_objective,
    run_main,
    stage_context,
    start_session,
)


def get_parser():
    parser = base_parser(__doc__)
    add_pruning_arguments(parser)
    return parser


def main() -> None:
    args = parse_params(get_parser())  # checks every parameter: a bad value fails in seconds, before any training
    ctx = stage_context(start_session(args))

    dense, _ = dense_stage(ctx, args.model)
    pruned, info = pruned_stage(ctx, args.model, args.pruner, args.sparsity, schedule=args.prune_schedule,
                                steps=args.prune_steps, report_epochs=True,
                                stage_sparsity=stagewise.parse("stage_sparsity", args.stage_sparsity))

    metrics = compression_metrics(ctx, pruned, dense)
    metrics["val_acc_before_finetune"] = info["val_acc_before_finetune"]  # gradual: after the first round's cut
    for k, done in enumerate(info.get("rounds", []), start=1):  # gradual: each round's level, size and accuracy
        metrics |= {f"round{k}_{name}": value for name, value in done.items()}
    report_objective(metrics, args, "prune")


if __name__ == "__main__":
    run_main(main)
