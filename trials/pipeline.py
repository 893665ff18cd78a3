"""Combined pipeline trial (seed experiment 4): architecture → train → prune → quantize → deploy int8 →
measure every stage beside the dense ResNet-18 baseline → report one full row of the seed's table to NNI.

    python trials/pipeline.py --profile smoke                                  # ResNet-18, FPGM 50%, QAT int8
    python trials/pipeline.py --arch best_arch.json --pruner l1 --sparsity 0.6 --algorithm lsq --bits 4

`--arch` is `resnet18` or the JSON `python -m common.nas export` wrote. The trained architecture and its
pruned + fine-tuned model come from the artifact cache, so trials that share that prefix train it once.
Keys: `dense_*` is the ResNet-18 baseline, `arch_*` the trained architecture, `pruned_*` after pruning
and fine-tuning, `sim_*` NNI's simulated quantization, `int8_*` (and the headline keys) the deployed model.
"""

import _path  # noqa: F401

from common.models import arch_key, load_arch
from common.pruning import PRUNERS
from common.pruning import validate as validate_pruning
from common.quantization import validate as validate_quantization
from common.stages import add_quantization_arguments, quantize_deploy_measure
from common.trial import base_parser, parse_params, report_objective, run_main, start_session


def get_parser():
    parser = base_parser(__doc__)
    parser.add_argument("--arch", default="resnet18", help="'resnet18' or an architecture JSON from NAS export")
    parser.add_argument("--pruner", default="fpgm", choices=PRUNERS)
    parser.add_argument("--sparsity", type=float, default=0.5, help="fraction of each conv's filters removed")
    add_quantization_arguments(parser)
    return parser


def main() -> None:
    args = parse_params(get_parser())
    # Every stage's parameters are checked before any training: a bad value must fail in seconds.
    arch = load_arch(args.arch)
    validate_pruning(args.pruner, args.sparsity)
    validate_quantization(args.algorithm, args.bits)
    session = start_session(args)

    baseline, _ = session.dense_model("resnet18")
    trained = baseline if arch == "resnet18" else session.dense_model(arch)[0]
    pruned, prune_info = session.pruned_model(arch, args.pruner, args.sparsity, report_epochs=False)
    metrics = quantize_deploy_measure(session, pruned, {"dense": baseline, "arch": trained},
                                      algorithm=args.algorithm, bits=args.bits,
                                      calibration_batches=args.calibration_batches, start_name="pruned")
    metrics |= {"arch_key": arch_key(arch), "pruned_val_acc_before_finetune": prune_info["val_acc_before_finetune"]}
    # `default`: the deployed model's validation accuracy, under the config's budgets.
    report_objective(metrics, args, "int8_val_acc")


if __name__ == "__main__":
    run_main(main)
