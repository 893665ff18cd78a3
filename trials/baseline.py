"""Baseline trial: train (or load from the artifact cache) the dense model (`--model`, ResNet-18 by default),
measure, report.

    python trials/baseline.py --profile smoke
"""

from common.record import result_keys
from common.stages import dense_stage
from common.trial import base_parser, measure, parse_params, report_objective, run_main, stage_context, start_session


def main() -> None:
    args = parse_params(base_parser(__doc__, finetune=False))
    ctx = stage_context(start_session(args))

    dense, _ = dense_stage(ctx, args.model, report_epochs=True)
    measured, _ = measure(ctx, {"dense": dense})
    report_objective(result_keys(measured["dense"]), args, "baseline")


if __name__ == "__main__":
    run_main(main)
