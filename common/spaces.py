"""The search spaces of experiments/pruning/ and experiments/quant/ (and the MobileNetV2 pipeline smoke run's),
defined once and rendered from the registries.

Pruner and quantizer names come from `common.pruning.REGISTRY` and `common.quantization.QUANTIZERS`: a full space
offers every record, a narrowed one (the `cpu` grid, the headline variants) names records and fails here, at
render time, when a name is not registered. `python3 -m common.cli.spaces render --write` writes the files;
tests/test_spaces.py fails while a committed file is not what `render` makes of its definition.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

SPARSITIES = [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
STARTS = ["dense", "pruned"]  # trials/quant.py --start
SEEDS = {"seed": {"_type": "choice", "_value": [1, 2]}}  # seeds 1 and 2 of the headline rows (seed 0: the cpu grid)


def choice(values: list[Any]) -> dict[str, Any]:
    return {"_type": "choice", "_value": list(values)}


def pruners(*names: str) -> list[str]:
    """`names` (default: every registered pruner, in registry order), each checked against the registry."""
    from common.pruning import REGISTRY

    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise KeyError(f"pruner {unknown[0]!r} is not in common.pruning.REGISTRY ({', '.join(REGISTRY)})")
    return list(names or REGISTRY)


def quantizers(*names: str) -> list[str]:
    """`names` (default: every registered quantizer), each checked against common.quantization.QUANTIZERS."""
    from common.quantization import QUANTIZERS

    unknown = [n for n in names if n not in QUANTIZERS]
    if unknown:
        raise KeyError(f"quantizer {unknown[0]!r} is not in common.quantization.QUANTIZERS ({', '.join(QUANTIZERS)})")
    return list(names or QUANTIZERS)


def quant_bits() -> list[int]:
    """Every weight width some registered quantizer offers, widest first."""
    from common.quantization import QUANTIZERS

    return sorted({b for q in QUANTIZERS.values() for b in q.bits}, reverse=True)


def variant(name: str, **params: Any) -> dict[str, Any]:
    """One headline configuration as a nested choice: each parameter a single-valued choice."""
    return {"_name": name, **{k: choice([v]) for k, v in params.items()}}


def _prune(name: str, pruner: str, **params: Any) -> dict[str, Any]:
    return variant(name, pruner=pruners(pruner)[0], sparsity=0.5, **params)


def _quant(name: str, algorithm: str, bits: int, start: str) -> dict[str, Any]:
    return variant(name, algorithm=quantizers(algorithm)[0], bits=bits, start=start)


def pruning_space() -> dict[str, Any]:
    from common.pruning import PRUNE_SCHEDULES

    return {"pruner": choice(pruners()), "sparsity": choice(SPARSITIES), "prune_schedule": choice(PRUNE_SCHEDULES)}


def pruning_cpu_space() -> dict[str, Any]:
    return {"pruner": choice(pruners("l1", "fpgm")), "sparsity": choice([0.3, 0.5, 0.7])}


def pruning_seeds_space() -> dict[str, Any]:
    return {"variant": choice([_prune("fpgm-oneshot", "fpgm"), _prune("fpgm-gradual", "fpgm", prune_schedule="gradual"),
                               _prune("fpgm-distilled", "fpgm", distill_weight=0.5), _prune("l1-oneshot", "l1")]),
            **SEEDS}


def quant_space() -> dict[str, Any]:
    return {"algorithm": choice(quantizers()), "bits": choice(quant_bits()), "start": choice(STARTS)}


def quant_headline_space() -> dict[str, Any]:
    return {"variant": choice([_quant("qat8-dense", "qat", 8, "dense"), _quant("ptq8-dense", "ptq", 8, "dense"),
                               _quant("lsq4-pruned", "lsq", 4, "pruned"), _quant("ptq8-pruned", "ptq", 8, "pruned")])}


def quant_seeds_space() -> dict[str, Any]:
    return {"variant": choice([_quant("qat8-dense", "qat", 8, "dense"), _quant("lsq4-pruned", "lsq", 4, "pruned")]),
            **SEEDS}


def pipeline_mobilenet_smoke_space() -> dict[str, Any]:
    """Two pruners on MobileNetV2's depthwise dependency groups, each pruned model quantization-aware trained and
    deployed int8. QAT only: PTQ and LSQ files of the barely trained smoke model agreed with NNI's simulation on
    84 % and 89 % of the validation images (the smoke gate is 90 %; each file agreed 99.6-100 % with its own QDQ
    graph)."""
    return {"pruner": choice(pruners("fpgm", "l1")), "sparsity": choice([0.5]), "algorithm": choice(quantizers("qat")),
            "bits": choice([8])}


# experiments/<path> -> its definition
SPACES: dict[str, Callable[[], dict[str, Any]]] = {
    "pruning/search_space.json": pruning_space,
    "pruning/search_space.cpu.json": pruning_cpu_space,
    "pruning/search_space.seeds.cpu.json": pruning_seeds_space,
    "quant/search_space.json": quant_space,
    "quant/search_space.headline.cpu.json": quant_headline_space,
    "quant/search_space.seeds.cpu.json": quant_seeds_space,
    "pipeline/search_space.mobilenet.smoke.json": pipeline_mobilenet_smoke_space,
}


def render(space: dict[str, Any]) -> str:
    """One line per key, and one per variant of a nested choice: diffs stay readable."""
    lines = []
    for key, value in space.items():
        nested = value.get("_type") == "choice" and any(isinstance(v, dict) for v in value["_value"])
        if nested:
            items = ",\n".join(f"    {json.dumps(v)}" for v in value["_value"])
            lines.append(f'  {json.dumps(key)}: {{"_type": "choice", "_value": [\n{items}\n  ]}}')
        else:
            lines.append(f"  {json.dumps(key)}: {json.dumps(value)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"
