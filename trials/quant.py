"""Quantization trial: cached dense (or 50%-pruned) model (`--model`, ResNet-18 by default) → NNI quantizer
(PTQ calibrates; QAT, LSQ and DoReFa fine-tune through NNI's TorchEvaluator) → a real int8 ONNX Runtime model
carrying NNI's scales → accuracy of both, their agreement, CPU latency (fp32 torch, fp32 ORT, int8 ORT) and size →
report to NNI.

    python trials/quant.py --algorithm qat --bits 8 --start pruned --profile smoke

`--bits` is the weight width; activations are 8-bit (common/quantization.py says why). No CPU runtime here
executes 4-bit convolutions: a 4-bit trial's latency is the int8 runtime running its 4-bit weights, and
`packed_size_mb` is what a 4-bit format would store.
"""

from common import stagewise
from common.models import stage_function
from common.stages import add_quantization_arguments, dense_stage, pruned_stage, quantize_deploy_measure
from common.trial import (
    base_parser,
    deployment_options,
    parse_params,
    report_objective,
    run_main,
    stage_context,
    start_session,
)

STARTS = ("dense", "pruned")
PRUNED = ("fpgm", 0.5)  # the pruning stage's 50% FPGM model, shared through the artifact cache


def get_parser():
    parser = base_parser(__doc__)
    add_quantization_arguments(parser)
    parser.add_argument("--start", default="dense", choices=STARTS, help="quantize the dense or the 50%%-pruned model")
    return parser


def main() -> None:
    args = parse_params(get_parser())  # checks every parameter: a bad value fails in seconds, before any training
    ctx = stage_context(start_session(args))

    dense, _ = dense_stage(ctx, args.model)
    start = dense if args.start == "dense" else pruned_stage(ctx, args.model, *PRUNED)[0]
    metrics = quantize_deploy_measure(ctx, start, {"dense": dense}, algorithm=args.algorithm,
                                      bits=args.bits, calibration_batches=args.calibration_batches,
                                      stage_bits=stagewise.parse("stage_bits", args.stage_bits),
                                      stage_of=stage_function(args.model) if args.stage_bits else None,
                                      **deployment_options(args))
    # `default` is the deployed int8 model's validation accuracy: what the user ships.
    report_objective(metrics, args, "quant", "int8_val_acc")


if __name__ == "__main__":
    run_main(main)
