"""Baseline trial: train (or load from the artifact cache) the dense CIFAR ResNet-18, measure, report.

    python trials/baseline.py --profile smoke
"""

import _path  # noqa: F401

from common.trial import base_parser, parse_params, report_objective, run_main, start_session


def main() -> None:
    args = parse_params(base_parser(__doc__))
    session = start_session(args)

    dense, _ = session.dense_model("resnet18", report_epochs=True)
    acc = session.accuracy(dense)
    latency = session.latency({"dense": dense})["dense"]

    metrics = {"accuracy": acc["test_acc"], **acc, **session.describe(dense),
               **{f"latency_ms_b{b}": ms for b, ms in latency.items()}}
    report_objective(metrics, args)


if __name__ == "__main__":
    run_main(main)
