"""Combined pipeline trial: architecture → train → prune → quantize → deploy int8 → measure every stage
beside the dense ResNet-18 baseline → report one result with every stage's metrics to NNI.

    python trials/pipeline.py --profile smoke                                  # ResNet-18, FPGM 50%, QAT int8
    python trials/pipeline.py --arch best_arch.json --pruner l1 --sparsity 0.6 --algorithm lsq --bits 4

`--arch` is `resnet18` or the JSON `python3 -m common.cli.nas export` wrote. The trained architecture and its
pruned + fine-tuned model come from the artifact cache, so trials that share that prefix train it once.
The keys of every stage are listed in common/stages.py (`compress_pipeline`).
"""

from common import stagewise
from common.models import load_arch
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
    parser.add_argument("--arch", default="resnet18", help="'resnet18' or an architecture JSON from NAS export")
    add_pruning_arguments(parser)
    add_quantization_arguments(parser)
    return parser


def main() -> None:
    args = parse_params(get_parser())  # checks every stage's parameters: a bad value fails in seconds
    arch = load_arch(args.arch)  # before any training too
    ctx = stage_context(start_session(args))

    metrics = compress_pipeline(ctx, arch, pruner=args.pruner,
                                sparsity=args.sparsity, algorithm=args.algorithm, bits=args.bits,
                                calibration_batches=args.calibration_batches,
                                prune_schedule=args.prune_schedule, prune_steps=args.prune_steps,
                                stage_sparsity=stagewise.parse("stage_sparsity", args.stage_sparsity),
                                stage_bits=stagewise.parse("stage_bits", args.stage_bits),
                                **deployment_options(args))
    # `default`: the deployed model's validation accuracy, under the config's budgets.
    report_objective(metrics, args, "pipeline", "int8_val_acc")


if __name__ == "__main__":
    run_main(main)
