"""Baseline trial: train (or load from the artifact cache) the dense CIFAR ResNet-18, measure, report.

    python trials/baseline.py --profile smoke
"""

from common.record import result_keys
from common.stages import dense_stage
from common.trial import base_parser, parse_params, report_objective, run_main, start_session, training_inputs


def main() -> None:
    args = parse_params(base_parser(__doc__))
    session = start_session(args)

    dense, _ = dense_stage(training_inputs(session), "resnet18", report_epochs=True)
    report_objective(result_keys(session.measure({"dense": dense})["dense"]), args, "baseline")


if __name__ == "__main__":
    run_main(main)
