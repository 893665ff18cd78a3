"""Combined pipeline trial: architecture → train → prune → quantize → deploy int8 → measure every stage
beside the dense model (`--model`, ResNet-18 by default) → report one result with every stage's metrics to NNI.

    python trials/pipeline.py --profile smoke                                  # ResNet-18, FPGM 50%, QAT int8
    python trials/pipeline.py --arch best_arch.json --pruner l1 --sparsity 0.6 --algorithm lsq --bits 4
    python trials/pipeline.py --model mobilenet_v2                            # MobileNetV2 for small images

`--arch` is `--model` itself (the default) or, for ResNet-18, the JSON `python3 -m common.cli.nas export` wrote.
The trained architecture and its pruned + fine-tuned model come from the artifact cache, so trials that share that
prefix train it once.
The keys of every stage are listed in common/stages.py (`compress_pipeline`).
"""

import argparse
from typing import Any

from common import params, stagewise
from common.models import DEFAULT_MODEL, load_arch
from common.pruning import add_pruning_arguments
from common.stages import add_quantization_arguments, compress_pipeline
from common.trial import (
    base_parser,
    deployment_options,
    parse_params,
    report_objective,
    run_main,
    stage_context,
    start_session,
)


def get_parser():
    parser = base_parser(__doc__)
    parser.add_argument("--arch", default=None,
                        help=f"an architecture JSON from NAS export (a {DEFAULT_MODEL} relative); default: --model")
    params.add_check(parser, _check_arch)
    params.add_resolver(parser, _resolve_arch)
    add_pruning_arguments(parser)
    add_quantization_arguments(parser)
    return parser


def _check_arch(args: argparse.Namespace) -> None:
    if args.arch not in (None, args.model) and args.model != DEFAULT_MODEL:
        raise ValueError(f"--arch {args.arch} is a NAS architecture (a {DEFAULT_MODEL} relative): it cannot be "
                         f"combined with --model {args.model}")


def _resolve_arch(values: dict[str, Any], profile: Any) -> None:
    values["arch"] = values["arch"] or values["model"]  # echo what was trained


def main() -> None:
    args = parse_params(get_parser())  # checks every stage's parameters: a bad value fails in seconds
    arch = args.model if args.arch == args.model else load_arch(args.arch)  # before any training too
    ctx = stage_context(start_session(args))

    metrics = compress_pipeline(ctx, arch, pruner=args.pruner,
                                sparsity=args.sparsity, algorithm=args.algorithm, bits=args.bits,
                                calibration_batches=args.calibration_batches,
                                prune_schedule=args.prune_schedule, prune_steps=args.prune_steps,
                                stage_sparsity=stagewise.parse("stage_sparsity", args.stage_sparsity),
                                stage_bits=stagewise.parse("stage_bits", args.stage_bits), model=args.model,
                                **deployment_options(args))
    # `default`: the deployed model's validation accuracy, under the config's budgets.
    report_objective(metrics, args, "pipeline", "int8_val_acc")


if __name__ == "__main__":
    run_main(main)
