"""Per-stage compression: a sparsity and a weight bit width for each of a model's four stages.

Uniform compression (one sparsity, one bit width for every layer) is the default everywhere; these values
refine it per stage (ResNet's `layer1` .. `layer4`; how any model's layers group into stages is its record's
`stage_of`, common/models.py), the granularity AMC / HAQ-style searches use on CIFAR ResNets:

- `--stage-sparsity 0.2,0.4,0.6,0.7`: the fraction of filters removed in each stage's convs. The stem conv
  feeds stage 1's residual sums, so its filters follow stage 1's value (channels joined by an addition are
  pruned together); the classifier keeps its outputs, as with uniform pruning.
- `--stage-bits 8,8,4,4`: weight bits per stage; the stem and the classifier stay at 8 (as at uniform 4 bits).

A tuner cannot emit a list, so a search space names one key per stage (`stage1_sparsity` .. `stage4_bits`);
`fold_tuner_parameters` turns them into the flags' comma-separated values before they are parsed, once. A key
`uniform_sparsity` / `uniform_bits` gives every stage the same value: the uniform search of the comparison
(experiments/pareto/search_space.uniform.json) then runs the very code path of the per-stage one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

STAGES = 4  # every model record with stages has four (common/models.py: ModelRecord.stage_of)


@dataclass(frozen=True)
class StageFlag:
    flag: str
    convert: Callable[[str], Any]
    valid: Callable[[Any], bool]
    what: str
    tuner_key: str  # `stage{k}_<tuner_key>` in a search space


FLAGS: dict[str, StageFlag] = {
    "stage_sparsity": StageFlag("--stage-sparsity", float, lambda v: 0.0 <= v < 1.0,
                                "a fraction of filters removed in [0, 1)", "sparsity"),
    "stage_bits": StageFlag("--stage-bits", int, lambda v: v in (4, 8), "a weight bit width, 4 or 8", "bits"),
}


def parse(dest: str, text: Any) -> tuple | None:
    """The per-stage values of flag `dest` from its comma-separated text (None: uniform); ValueError naming
    the flag for a wrong count or a value out of range."""
    if text is None:
        return None
    spec = FLAGS[dest]
    parts = [p.strip() for p in str(text).split(",")]
    if len(parts) != STAGES:
        raise ValueError(f"{spec.flag} needs {STAGES} comma-separated values (stages 1-{STAGES}), got {text!r}")
    try:
        values = tuple(spec.convert(p) for p in parts)
    except ValueError:
        raise ValueError(f"{spec.flag} {text!r}: each value must be {spec.what}") from None
    bad = [v for v in values if not spec.valid(v)]
    if bad:
        raise ValueError(f"{spec.flag} {text!r}: {bad[0]!r} is not {spec.what}")
    return values


def text(values: tuple | None) -> str | None:
    return None if values is None else ",".join(str(v) for v in values)


def fold_tuner_parameters(tuned: Mapping[str, Any]) -> dict[str, Any]:
    """A search space's `stage{k}_<name>` keys as the flag values they stand for (`stage_sparsity`: "a,b,c,d");
    ValueError when a stage is missing."""
    out = dict(tuned)
    for dest, spec in FLAGS.items():
        keys = [f"stage{k}_{spec.tuner_key}" for k in range(1, STAGES + 1)]
        present = [k for k in keys if k in out]
        uniform = f"uniform_{spec.tuner_key}"
        if uniform in out:
            if present:
                raise ValueError(f"search space gives {uniform} and {', '.join(present)}: one or the other")
            out[dest] = ",".join([str(out.pop(uniform))] * STAGES)
            continue
        if not present:
            continue
        if len(present) != STAGES:
            missing = sorted(set(keys) - set(present))
            raise ValueError(f"search space gives {', '.join(present)} but not {', '.join(missing)}: "
                             f"{spec.flag} needs all {STAGES} stages")
        out[dest] = ",".join(str(out.pop(k)) for k in keys)
    return out


def search_space_json(max_sparsity: float = 0.8) -> dict[str, Any]:
    """The per-stage search space (experiments/pareto/search_space.json): the pruner, a sparsity per stage
    (0 .. `max_sparsity` in steps of 0.1) and weight bits per stage."""
    from common.pruning import REGISTRY  # pruning imports this module

    return {
        "pruner": {"_type": "choice", "_value": sorted(name for name, p in REGISTRY.items() if p.per_stage)},
        **{f"stage{k}_sparsity": {"_type": "quniform", "_value": [0.0, max_sparsity, 0.1]}
           for k in range(1, STAGES + 1)},
        **{f"stage{k}_bits": {"_type": "choice", "_value": [4, 8]} for k in range(1, STAGES + 1)},
    }


def uniform_search_space_json(max_sparsity: float = 0.8) -> dict[str, Any]:
    """The per-stage space collapsed to one sparsity and one bit width for all stages
    (experiments/pareto/search_space.uniform.json): the same pruners, ranges and steps, and the same flags, so
    that a comparison of the two searches differs in the granularity only."""
    per_stage = search_space_json(max_sparsity)
    return {"pruner": per_stage["pruner"], **{f"uniform_{spec.tuner_key}": per_stage[f"stage1_{spec.tuner_key}"]
                                             for spec in FLAGS.values()}}
