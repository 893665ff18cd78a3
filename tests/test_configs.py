"""Every experiment config is a valid NNI 3.0 config whose trial accepts every point of its search space, and
the scale-out configs keep their promises: GPU variants schedule one GPU per trial (full configs none), and
early stopping only where trials compete.

`nnictl create` only finds a bad classArg when the dispatcher starts (the experiment then ends in ERROR),
so the built-in algorithms' own argument validators are run here.

The configs are generated from one definition (common/configs.py); the last tests keep the committed files
exactly what `python3 -m common.cli.configs render --write` makes of it.
"""

import importlib.util
import itertools
import json
import re
import shlex
import sys
from pathlib import Path

import pytest
import yaml
from nni.experiment.config import ExperimentConfig
from nni.tools.package_utils import create_customized_class_instance
from nni.tools.package_utils.tuner_factory import create_builtin_class_instance, create_validator_instance

from common import configs
from common.cli import configs as configs_cli
from tests.nnictl_utils import ROOT

CONFIGS = sorted((ROOT / "experiments").glob("*/config*.yml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_config_is_valid(path: Path, tmp_path: Path):
    config = ExperimentConfig.load(str(path))  # relative paths resolve against the config file
    for machine in getattr(config.training_service, "machine_list", []):  # placeholders: the key must exist
        machine.ssh_key_file = tmp_path / "id_placeholder"
        machine.ssh_key_file.touch()
    config.validate()
    raw = yaml.safe_load(path.read_text())
    assert (path.parent / raw["searchSpaceFile"]).is_file()
    for kind in ("tuner", "assessor", "advisor"):
        algo = raw.get(kind)
        name = algo and (algo.get("name") or _wrapped_builtin(algo))
        if name and (kind != "advisor" or name != "BOHB"):  # BOHB: nni[BOHB] extra
            validator = create_validator_instance(kind + "s", name)
            if validator is not None:  # a wrapped tuner takes its NNI tuner's classArgs
                validator.validate_class_args(**algo.get("classArgs", {}))


def _wrapped_builtin(algo: dict) -> str | None:
    """NNI's builtin name of a tuner that common/nni_compat.py wraps (className common.nni_compat.TPE -> TPE)."""
    module, _, name = algo.get("className", "").rpartition(".")
    return name if module == "common.nni_compat" else None


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_config_names_a_stock_tuner_that_dies_of_a_re_delivered_parameter(path: Path):
    """Issue #27: stock TPE / GridSearch / Evolution die of a parameter id whose trial ended; the configs use the
    wrapped ones (or the project's own tuners, which carry the same wrapper)."""
    tuner = yaml.safe_load(path.read_text()).get("tuner")
    if tuner is None:  # an advisor instead
        return
    assert "name" not in tuner, f"{path}: tuner {tuner['name']} is NNI's stock class; use common.nni_compat"
    assert tuner["className"].startswith(("common.nni_compat.", "common.rl_tuner.", "common.pareto_tuner."))


def test_full_configs_run_without_gpu_and_gpu_variants_schedule_one_per_trial():
    for name in ("pruning", "baseline"):
        plain = yaml.safe_load((ROOT / "experiments" / name / "config.yml").read_text())
        gpu = yaml.safe_load((ROOT / "experiments" / name / "config.gpu.yml").read_text())
        # trialGpuNumber on a machine without GPUs shuts the NNI 3.0 manager down: never in config.yml.
        assert "trialGpuNumber" not in plain and "trialGpuNumber" not in plain["trainingService"]
        assert gpu["trialGpuNumber"] == 1 and gpu["trainingService"]["maxTrialNumberPerGpu"] == 2
        assert gpu["trialCommand"] == plain["trialCommand"] and gpu["searchSpaceFile"] == plain["searchSpaceFile"]


def test_early_stopping_where_trials_compete():
    pruning = yaml.safe_load((ROOT / "experiments" / "pruning" / "config.yml").read_text())
    assert pruning["assessor"]["name"] == "Medianstop"
    baseline = yaml.safe_load((ROOT / "experiments" / "baseline" / "config.yml").read_text())
    assert "assessor" not in baseline  # seeds are not competitors (see the comment there)


def _trial_parser(script: Path):
    """The argparse parser of a trial script, imported the way NNI runs it (trials/ on sys.path)."""
    sys.path.insert(0, str(script.parent))
    try:
        spec = importlib.util.spec_from_file_location(f"trial_{script.stem}", script)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(script.parent))
    from common.trial import base_parser

    return module.get_parser() if hasattr(module, "get_parser") else base_parser(module.__doc__)


def _points(spec: dict) -> list:
    kind, values = spec["_type"], spec["_value"]
    if kind == "choice":  # a nested choice arrives with each of its own parameters chosen
        return [point for value in values for point in (_nested_points(value) if isinstance(value, dict) else [value])]
    if kind in ("quniform", "uniform"):
        return [values[0], values[1]]
    raise AssertionError(f"search space type {kind} is not covered by this test")


# Spaces no config names, run as `python3 -m common.cli.record CONFIG --search-space SPACE` (docs/results.md).
RECORDING_SPACES = {"quant/search_space.headline.cpu.json": "quant/config.cpu.yml"}
SPACE_RUNS = [(path, path.parent / yaml.safe_load(path.read_text())["searchSpaceFile"]) for path in CONFIGS] + [
    (ROOT / "experiments" / config, ROOT / "experiments" / space) for space, config in RECORDING_SPACES.items()]


def test_every_search_space_file_is_run_by_a_config_or_a_named_recording():
    named = {space.resolve() for _, space in SPACE_RUNS}
    assert sorted(set((ROOT / "experiments").glob("*/search_space*.json")) - named) == []


@pytest.mark.parametrize("path,space_file", SPACE_RUNS,
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_trial_accepts_every_value_of_its_search_space(path: Path, space_file: Path, tuner):
    """A typo or an unsupported value in search_space.json fails here, not after an hour of trials."""
    from common.trial import parse_params

    raw = yaml.safe_load(path.read_text())
    command = shlex.split(raw["trialCommand"])
    assert command[0] == "python3" and command[1].startswith("trials/"), command
    parser = _trial_parser(ROOT / command[1])
    space = json.loads(space_file.read_text())
    algo = raw["tuner"]
    if "name" in algo:
        create_builtin_class_instance(algo["name"], algo.get("classArgs", {}),
                                      "tuners").update_search_space(space)  # as NNI's dispatcher reads it
    elif _wrapped_builtin(algo) in ("TPE", "GridSearch", "Evolution"):  # advisors connect to a manager when built
        create_customized_class_instance({**algo, "codeDirectory": str(path.parent / algo["codeDirectory"])}
                                         ).update_search_space(space)
    # Per-stage keys only make a flag together (common/stagewise.py): the others' first values come along.
    stages = {key: _points(spec)[0] for key, spec in space.items() if STAGE_KEY.fullmatch(key)}
    for key, spec in space.items():
        for value in _points(spec):
            tuner({**stages, key: value} if key in stages else {key: value})
            args = parse_params(parser, command[2:])  # merge_parameter + choices + budget checks
            if isinstance(value, dict):  # a nested choice: each of its parameters is a flag
                assert {k: getattr(args, k) for k in value if k != "_name"} == {k: v for k, v in value.items()
                                                                                 if k != "_name"}
            else:
                assert _echoed(args, key) == pytest.approx(value)


def _nested_points(choice: dict) -> list[dict]:
    inner = {key: _points(spec) for key, spec in choice.items() if key != "_name"}
    combos = itertools.product(*inner.values())
    return [{"_name": choice["_name"], **dict(zip(inner, values, strict=True))} for values in combos]


STAGE_KEY = re.compile(r"stage(\d)_(sparsity|bits)")


def _echoed(args, key: str):
    """What the trial parsed for a search-space key (a per-stage key: its stage's value of the flag)."""
    from common import stagewise

    match = STAGE_KEY.fullmatch(key)
    if match:
        return stagewise.parse(f"stage_{match[2]}", getattr(args, f"stage_{match[2]}"))[int(match[1]) - 1]
    uniform = UNIFORM_KEY.fullmatch(key)
    if uniform:  # one value for every stage
        values = set(stagewise.parse(f"stage_{uniform[1]}", getattr(args, f"stage_{uniform[1]}")))
        assert len(values) == 1, values
        return values.pop()
    return getattr(args, key)


UNIFORM_KEY = re.compile(r"uniform_(sparsity|bits)")


CPU_GRIDS = {  # what the issue asks each 2-core CPU experiment to search
    "baseline": {"seed": [0, 1, 2]},
    "pruning": {"pruner": ["l1", "fpgm"], "sparsity": [0.3, 0.5, 0.7]},
    "quant": {"algorithm": ["ptq", "qat", "lsq", "dorefa"], "bits": [8, 4], "start": ["dense", "pruned"]},
    "pipeline": {"pruner": ["fpgm"], "sparsity": [0.5], "algorithm": ["qat"], "bits": [8],
                 "distill_weight": [0.0, 0.5]},
}


@pytest.mark.parametrize("name", ["baseline", "pruning", "quant", "nas", "nas_rl", "pipeline"])
def test_cpu_configs_run_real_images_one_trial_at_a_time(name):
    raw = yaml.safe_load((ROOT / "experiments" / name / "config.cpu.yml").read_text())
    assert "--profile cpu --dataset fashion-mnist" in raw["trialCommand"] and raw["trialConcurrency"] == 1
    space = json.loads((ROOT / "experiments" / name / raw["searchSpaceFile"]).read_text())
    grid = {key: spec["_value"] for key, spec in space.items()}
    if name in ("nas", "nas_rl"):
        assert len(list(itertools.product(*grid.values()))) <= 12 and raw["maxTrialNumber"] <= 6  # small candidates
    else:
        assert grid == CPU_GRIDS[name] and raw["tuner"]["className"] == "common.nni_compat.GridSearch"
        assert raw["maxTrialNumber"] == len(list(itertools.product(*grid.values())))  # each point once


# ------------------------------------------------------------------ generated from one definition (common/configs.py)

RENDERED = {ROOT / "experiments" / c.path: c for c in configs.CONFIGS}
REGENERATE = "regenerate: python3 -m common.cli.configs render --write"


def test_the_definition_renders_exactly_the_committed_configs():
    assert len(RENDERED) == len(configs.CONFIGS), "two variants render to one file"
    unknown, unwritten = sorted(set(CONFIGS) - set(RENDERED)), sorted(set(RENDERED) - set(CONFIGS))
    assert not unknown, f"configs that common/configs.py does not define (add them there or delete them): {unknown}"
    assert not unwritten, f"configs that `render --write` would add: {unwritten} ({REGENERATE}, then commit them)"
    assert set(configs.HEADERS) == {c.path for c in configs.CONFIGS}  # no prose left over for a removed file


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_committed_config_is_the_rendered_one(path: Path):
    text = configs.render(RENDERED[path])  # a KeyError: a config the definition does not know
    assert path.read_text(encoding="utf-8") == text, REGENERATE
    # Its prose says it is generated and how to run this very file (a copied header would name another).
    assert text.startswith(configs.GENERATED) and f"nnictl create --config experiments/{RENDERED[path].path} " in text


def test_render_write_writes_every_config_and_names_the_ones_it_does_not_know(tmp_path: Path, capsys):
    stray = tmp_path / "pruning" / "config.old.yml"
    stray.parent.mkdir()
    stray.write_text("experimentName: old\n")
    assert configs_cli.write(tmp_path) == 1  # the stray file is reported, not deleted
    assert "pruning/config.old.yml is not in common/configs.py" in capsys.readouterr().err
    for config in configs.CONFIGS:
        assert (tmp_path / config.path).read_text(encoding="utf-8") == configs.render(config)
    stray.unlink()
    assert configs_cli.write(tmp_path) == 0 and "wrote" not in capsys.readouterr().out  # nothing left to write


def test_render_prints_one_config_by_name(capsys):
    assert configs_cli.main(["render", "experiments/pipeline/config.cpu.yml"]) == 0
    assert capsys.readouterr().out == (ROOT / "experiments/pipeline/config.cpu.yml").read_text(encoding="utf-8")
