"""The NAS macro search space, defined once, and the tools around it.

A candidate is a plain dict over `SPACE`, e.g. ``{"stages": 3, "blocks": 2, "width": 32,
"activation": "relu", "kernel_size": 5}``: a CIFAR ResNet (common.models) with `stages` stages of
`blocks` basic blocks each, stage widths width * 2**i, and one activation and kernel size
throughout. ResNet-18 is the candidate {4, 2, 64, relu, 3}, so the search competes with the
baseline inside the space rather than beside it.

From this one definition come: validation of candidates, the `nn.Module`, the trial's flags, the
NNI search spaces (rendered, never hand-edited), and the choice of the best found architecture,
written as a JSON that `common.models.build_model(dict)` consumes. Trials are ranked by the
experiment's objective using the parameters each trial echoed in its final result. The commands
that write the search space files and read an experiment's results are `python3 -m common.cli.nas`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.metrics import size_measurement
from common.models import DEFAULT_MODEL, ResNetSpec, arch_key, build_model
from common.record import comparison_keys, ranking, read, result_keys, upgrade

if TYPE_CHECKING:
    from torch import nn

    from common.context import StageContext

# Depth 2-4, ReLU/Tanh and 3x3/5x5 kernels (the seed report's search) plus width and blocks per stage: without
# them every 4-stage candidate would be ResNet-18-sized and a budget could not be met by anything
# but a shallower net. 3*2*3*2*2 = 72 candidates: small enough for an EA/RL budget of ~50 trials.
SPACE: dict[str, tuple[Any, ...]] = {
    "stages": (2, 3, 4),
    "blocks": (1, 2),
    "width": (16, 32, 64),
    "activation": ("relu", "tanh"),
    "kernel_size": (3, 5),
}
HELP = {
    "stages": "number of residual stages (the depth); each halves the resolution",
    "blocks": "basic blocks per stage",
    "width": "channels of the first stage; stage i has width * 2**i",
    "activation": "activation used throughout",
    "kernel_size": "kernel size of every block's convolutions",
}
# ResNet-18: the argparse default, so `python trials/nas.py` alone reproduces (and shares the
# artifact cache entry of) the baseline.
DEFAULT_CANDIDATE: dict[str, Any] = {"stages": 4, "blocks": 2, "width": 64, "activation": "relu", "kernel_size": 3}

# The smoke experiments search the seed report's dimensions (depth, activation, kernel: 12 candidates)
# at width 16 with one block per stage, so 6 trials fit in minutes on 2 shared CPU cores; the trial
# validates against the full space either way.
SMOKE_RESTRICTION: dict[str, tuple[Any, ...]] = {"blocks": (1,), "width": (16,)}

# The NNI search spaces the experiments use, by name: the restriction of SPACE each one searches.
SEARCH_SPACES: dict[str, Mapping[str, tuple[Any, ...]]] = {"full": {}, "smoke": SMOKE_RESTRICTION}


class CandidateError(ValueError):
    """A candidate dict that is not a point of the search space."""


# ----------------------------------------------------------------------------------------- candidates


def validate_candidate(candidate: Mapping[str, Any], space: Mapping[str, Sequence[Any]] = SPACE) -> dict[str, Any]:
    """The candidate as a plain dict with every key of `space`; CandidateError names what is wrong."""
    if not isinstance(candidate, Mapping):
        raise CandidateError(f"a candidate is a dict over {list(space)}, got {type(candidate).__name__}")
    unknown = sorted(set(candidate) - set(space))
    missing = [k for k in space if k not in candidate]
    if unknown or missing:
        raise CandidateError(
            "candidate keys do not match the search space: "
            + "; ".join(filter(None, [unknown and f"unknown {unknown}", missing and f"missing {missing}"]))
            + f" (valid keys: {list(space)})"
        )
    out = {}
    for key, choices in space.items():
        value = candidate[key]
        # bool is an int in Python; True must not pass as 1 stage.
        if isinstance(value, bool) or value not in choices or type(value) is not type(_match(value, choices)):
            raise CandidateError(f"{key}={value!r} is outside the search space; choose from {list(choices)}")
        out[key] = value
    return out


def _match(value: Any, choices: Sequence[Any]) -> Any:
    return next(c for c in choices if c == value)


def candidate_spec(candidate: Mapping[str, Any], num_classes: int = 10) -> ResNetSpec:
    c = validate_candidate(candidate)
    return ResNetSpec(
        blocks=(c["blocks"],) * c["stages"],
        widths=tuple(c["width"] * 2**i for i in range(c["stages"])),
        activation=c["activation"],
        kernel_size=c["kernel_size"],
        num_classes=num_classes,
    )


def arch_dict(candidate: Mapping[str, Any]) -> dict[str, Any]:
    """The architecture JSON of a candidate: `build_model(arch_dict(c), num_classes)` builds it.

    num_classes is left out on purpose: the consumer's data set decides it.
    """
    spec = candidate_spec(candidate).to_dict()
    return {k: spec[k] for k in ("blocks", "widths", "activation", "kernel_size")}


def build_candidate(candidate: Mapping[str, Any], num_classes: int = 10) -> nn.Module:
    return build_model(candidate_spec(candidate, num_classes))


def all_candidates(space: Mapping[str, Sequence[Any]] = SPACE) -> Iterator[dict[str, Any]]:
    for values in itertools.product(*space.values()):
        yield dict(zip(space, values, strict=True))


# ---------------------------------------------------------------------------------------- search space


def subspace(restriction: Mapping[str, Sequence[Any]] | None = None) -> dict[str, tuple[Any, ...]]:
    """SPACE with some dimensions narrowed; a restriction must stay inside SPACE."""
    out = dict(SPACE)
    for key, values in (restriction or {}).items():
        if key not in SPACE:
            raise CandidateError(f"restriction on unknown key {key!r}; valid keys: {list(SPACE)}")
        outside = [v for v in values if v not in SPACE[key]]
        if outside or not values:
            raise CandidateError(f"restriction {key}={list(values)} must be a non-empty subset of {list(SPACE[key])}")
        out[key] = tuple(values)
    return out


def search_space_json(kind: str = "full") -> dict[str, Any]:
    """NNI HPO search space (`choice` per key) of the full space or the smoke sub-space."""
    if kind not in SEARCH_SPACES:
        raise ValueError(f"unknown search space {kind!r}; choose from {list(SEARCH_SPACES)}")
    space = subspace(SEARCH_SPACES[kind])
    return {key: {"_type": "choice", "_value": list(values)} for key, values in space.items()}


def _json_lines(d: Mapping[str, Any]) -> str:
    # One line per key: diffs of a search space or an exported architecture stay readable.
    return "{\n" + ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in d.items()) + "\n}\n"


def render_search_space(kind: str = "full") -> str:
    return _json_lines(search_space_json(kind))


# ---------------------------------------------------------------------------------------- trial helpers


def add_candidate_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per search-space key (dest == key, so NNI's parameters override them by name)."""
    group = parser.add_argument_group("candidate", "a point of the NAS search space (common/nas.py)")
    for key, choices in SPACE.items():
        group.add_argument(f"--{key.replace('_', '-')}", dest=key, type=type(choices[0]), choices=list(choices),
                           default=DEFAULT_CANDIDATE[key], help=HELP[key])


def candidate_from_args(args: argparse.Namespace | Mapping[str, Any]) -> dict[str, Any]:
    values = args if isinstance(args, Mapping) else vars(args)
    return validate_candidate({k: values[k] for k in SPACE if k in values})


def candidate_metrics(ctx: StageContext, model: nn.Module, baseline: nn.Module | None = None) -> dict[str, Any]:
    """Accuracy, cost and cost relative to ResNet-18 of a trained candidate.

    The size ratios come from an untrained ResNet-18 (free); a trained `baseline` adds its accuracy
    and latency (`dense_*`) measured interleaved with the candidate's, in the same process.
    """
    from common.trial import measure  # here, not above: exporting and ranking candidates need no trial

    if baseline is None:
        candidate = measure(ctx, {"model": model})[0]["model"]
        reference = size_measurement(build_model(DEFAULT_MODEL, ctx.num_classes, ctx.image_shape[0]), ctx.image_shape)
        return {**result_keys(candidate), **comparison_keys(candidate, reference)}
    m, _ = measure(ctx, {"model": model, "dense": baseline})
    return {**result_keys(m["model"]), **result_keys(m["dense"], "dense"), **comparison_keys(m["model"], m["dense"])}


# ----------------------------------------------------------------------------------------------- export


class ExportError(RuntimeError):
    """The best architecture could not be determined; the message says why and what to do."""


def _decode(value: Any) -> Any:
    # NNI hands a final result over as a JSON string, sometimes JSON-encoded twice.
    while isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            break
    return value


def result_record(trial_id: str, result: Any, parameter: Any = None) -> dict[str, Any]:
    """One trial as `select_best` takes it: its final result (decoded if NNI sent it as JSON text) and
    `parameter`, what NNI lists for the trial, kept only to point out NNI's mis-pairing."""
    return {"trial_id": trial_id, "result": _decode(result), "parameter": _decode(parameter)}


def select_best(records: Sequence[Mapping[str, Any]], metric: str = "default",
                mode: str = "maximize") -> tuple[dict[str, Any], dict[str, Any]]:
    """(best record, its candidate), the candidate read from the parameters the trial ECHOED.

    NNI 3.0 can pair a trial with another trial's parameters in its REST API, export and web UI
    when trialConcurrency >= 2 (NNI #5693, #5726): the echoed copy in the final result is the truth.
    """
    if mode not in ("maximize", "minimize"):
        raise ValueError(f"mode must be maximize or minimize, got {mode!r}")
    scored = []
    for r in records:
        result = r["result"]
        if not isinstance(result, Mapping):
            raise ExportError(f"trial {r['trial_id']} reported {result!r}, not a dict: not a trials/nas.py trial")
        if metric not in result:
            raise ExportError(f"trial {r['trial_id']} reported no {metric!r}; reported: {sorted(result)}")
        try:
            candidate = candidate_from_args(result)
        except CandidateError as err:
            raise ExportError(f"trial {r['trial_id']}'s final result does not echo a valid candidate ({err}); "
                              f"was it reported by trials/nas.py?") from err
        scored.append((float(result[metric]), r, candidate))
    if not scored:
        raise ExportError("the experiment has no final results yet (no trial finished)")
    # The report's rule too (common.record.ranking): ties go to the smaller network, then the lower trial id.
    _, best, candidate = min(scored, key=lambda t: ranking(t[1]["result"], t[1]["trial_id"], metric, mode))
    shown = best.get("parameter")
    if isinstance(shown, Mapping) and any(shown.get(k, candidate[k]) != candidate[k] for k in candidate):
        print(f"note: NNI lists trial {best['trial_id']} with parameters {dict(shown)}, but the trial echoed "
              f"{candidate}; using the echoed ones (NNI #5693)", file=sys.stderr)
    return dict(best), candidate


def export_best(records: Sequence[Mapping[str, Any]], out: str | Path, metric: str = "default",
                mode: str = "maximize", source: str = "") -> dict[str, Any]:
    """Write the best architecture to `out` (build_model JSON) and its trial to `<out stem>.trial.json`."""
    best, candidate = select_best(records, metric, mode)
    arch = arch_dict(candidate)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(_json_lines(arch))
    details = {"source": source, "trial_id": best["trial_id"], "metric": metric, "mode": mode,
               "candidate": candidate, "arch": arch, "arch_key": arch_key(arch), "result": best["result"]}
    out.with_name(out.stem + ".trial.json").write_text(json.dumps(details, indent=2, default=str) + "\n")
    return details


def candidate_table(records: Sequence[Mapping[str, Any]], metric: str = "default", mode: str = "maximize") -> str:
    """Markdown table of the trials (architecture, accuracy, latency, params), best first."""
    sign = -1 if mode == "maximize" else 1
    results = [upgrade(r["result"]) for r in records]
    rows = sorted(((m, read(m)) for m in results), key=lambda mr: (sign * float(mr[0][metric]), mr[1].params or 0))
    lines = [f"| architecture | {metric} | val acc | test acc | latency b1 (ms) | latency b64 (ms) | params |",
             "|---|---|---|---|---|---|---|"]

    def cell(value: float | None, spec: str) -> str:
        return "–" if value is None else format(value, spec)

    for result, m in rows:
        c = candidate_from_args(result)
        k = c["kernel_size"]
        name = f"{c['stages']} stages x {c['blocks']}, width {c['width']}, {c['activation']}, {k}x{k}"
        ms = m.latency.ms if m.latency else {}
        lines.append(f"| {name} | {float(result[metric]):.3f} | {cell(m.val_acc, '.3f')} | {cell(m.test_acc, '.3f')} "
                     f"| {cell(ms.get(1), '.2f')} | {cell(ms.get(64), '.1f')} | {cell(m.params, ',')} |")
    return "\n".join(lines)

