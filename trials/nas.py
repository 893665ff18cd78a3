"""NAS trial: one candidate of the macro space (common/nas.py) → trained with the profile's budget
(cached per architecture) → accuracy, latency, params, FLOPs, size → budget-aware objective
(common/objective.py) → NNI. The tuner (Evolution, or the RL tuner in common/rl_tuner.py) picks the
candidate; the flags' defaults are ResNet-18.

    python trials/nas.py --profile smoke --stages 3 --blocks 1 --width 16 --activation tanh --kernel-size 5
"""

from common.models import arch_key
from common.nas import add_candidate_arguments, arch_dict, candidate_from_args, candidate_metrics
from common.stages import dense_stage
from common.trial import base_parser, parse_params, report_objective, run_main, stage_context, start_session


def get_parser():
    parser = base_parser(__doc__, finetune=False)
    add_candidate_arguments(parser)
    parser.add_argument("--compare-baseline", action="store_true",
                        help="also report the cached --model's (ResNet-18's) accuracy and interleaved latency")
    return parser


def main() -> None:
    args = parse_params(get_parser())
    candidate = candidate_from_args(args)  # before any data or training: a bad candidate must fail in seconds
    ctx = stage_context(start_session(args))

    arch = arch_dict(candidate)
    model, _ = dense_stage(ctx, arch, report_epochs=True)
    baseline = dense_stage(ctx, args.model)[0] if args.compare_baseline else None

    metrics = {"arch": arch_key(arch), **candidate_metrics(ctx, model, baseline)}
    report_objective(metrics, args, "nas")


if __name__ == "__main__":
    run_main(main)
