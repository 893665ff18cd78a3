"""Every NNI config under experiments/, defined once: per experiment what its files share, per file what differs.

The files are generated: edit this module, then `python3 -m common.cli.configs render --write`
(tests/test_configs.py fails while a committed config is not what `render` makes of it).

Each experiment is a table of its files below. One row is one config file: the trial's flags (the profile
first), the trial count, and whatever else that file changes (tuner, search space, concurrency, GPUs, ...);
what a row leaves out is its experiment's (the `partial`) or Config's default. `notes` are the inline
comments, by YAML key. The prose each file starts with is in HEADERS, at the end of this module.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass, field
from functools import partial

import yaml

# The profile flags every trial command starts with (common/profiles.py).
FULL = "--profile full"  # CIFAR-10, a GPU
CPU = "--profile cpu --dataset fashion-mnist"  # real images on a 2-core CPU
SMOKE = "--profile smoke"  # synthetic data, offline, minutes
SEARCH = "--profile search --dataset fashion-mnist"  # `cpu`'s data and dense model, short trials for a search
NAS_FULL = f"{FULL} --max-params-ratio 0.5 --compare-baseline"  # the EA and RL searches share the trial
NAS_CPU = f"{CPU} --max-params 250000 --compare-baseline"
NAS_SMOKE = f"{SMOKE} --max-params 250000 --compare-baseline"

ONE_GPU = "one GPU, one trial: concurrent trials would also skew latency"
ONE_GPU_CPU_LATENCY = "one GPU, one trial; concurrent trials would also skew CPU latency"
GPUS = "= number of GPUs"


@dataclass(frozen=True)
class Config:
    """One experiments/<experiment>/<file>. A newline in `flags` is where the YAML folds the trial command."""

    experiment: str
    file: str
    name: str  # experimentName
    flags: str
    _: KW_ONLY
    script: str
    trials: int
    tuner: str  # YAML blocks (below) are text: they keep their comments
    space: str = "search_space.json"
    concurrency: int = 1
    duration: str | None = None  # maxExperimentDuration
    gpus: int | None = None  # trialGpuNumber: never in a config that must run without GPUs
    assessor: str = ""  # an assessor block, or comments saying why there is none
    service: str = ""  # the trainingService block; "" is LOCAL
    notes: Mapping[str, str] = field(default_factory=dict)

    @property
    def path(self) -> str:
        """Relative to experiments/."""
        return f"{self.experiment}/{self.file}"


# ------------------------------------------------------------------------------------- the experiments' files
# One function per experiment: `v` holds what its files share, each row is one file and what it sets.


def _baseline() -> list[Config]:
    v = partial(Config, "baseline", script="trials/baseline.py", tuner=GRID)
    return [
        v("config.yml", "baseline-full", FULL, trials=3, assessor=NO_ASSESSOR_WHY,
          notes={"trainingService": "one GPU per trial: config.gpu.yml"}),
        v("config.gpu.yml", "baseline-full-gpu", FULL, trials=3, gpus=1, notes={"trialConcurrency": GPUS},
          service=gpu_local("half a GPU per request: NNI 3.0 cannot schedule trialGpuNumber 1 on a 1-GPU machine")),
        v("config.cpu.yml", "baseline-cpu", CPU, trials=3, space="search_space.cpu.json",
          notes={"trialConcurrency": "2 cores: one trial at a time (concurrent trials would also skew latency)"}),
    ]


def _pruning() -> list[Config]:
    v = partial(Config, "pruning", script="trials/prune.py", trials=21, tuner=TPE)
    return [
        v("config.yml", "pruning-full", FULL, assessor=EARLY_STOPPING_WHY + MEDIANSTOP,
          notes={"trialConcurrency": ONE_GPU,
                 "maxTrialNumber": "of 3 pruners x 7 sparsities x 2 schedules (oneshot, gradual)",
                 "trainingService": "one GPU per trial: config.gpu.yml; other machines over SSH: config.remote.yml"}),
        v("config.gpu.yml", "pruning-full-gpu", FULL, gpus=1, assessor=MEDIANSTOP,
          service=gpu_local("half a GPU per request (see above); trialConcurrency keeps it at one trial per GPU"),
          notes={"trialConcurrency": GPUS, "assessor": "as in config.yml"}),
        v("config.cpu.yml", "pruning-cpu", CPU, trials=6, space="search_space.cpu.json", tuner=GRID,
          notes={"maxTrialNumber": "2 pruners x 3 sparsities"}),
        v("config.smoke.yml", "pruning-smoke", SMOKE, trials=4, duration="30m", tuner=TPE_SEED0),
        v("config.seeds.cpu.yml", "pruning-seeds-cpu", CPU, trials=8, space="search_space.seeds.cpu.json", tuner=GRID,
          notes={"maxTrialNumber": "4 headline configurations x seeds 1, 2"}),
        v("config.hyperband.yml", "pruning-hyperband", FULL, trials=22,
          tuner=noted(hyperband(9, 3), "R", "largest budget = fine-tune epochs (the full profile's default is 10)"),
          notes={"maxTrialNumber": "one full Hyperband iteration",
                 "tuner": "an advisor (tuner + early stopping in one): no assessor allowed"}),
        v("config.hyperband.smoke.yml", "pruning-hyperband-smoke", SMOKE, trials=3, duration="30m",
          tuner=hyperband(2, 2)),
        v("config.remote.yml", "pruning-remote",
          f"{FULL}\n--data-dir /mnt/shared/nni-suite/data --cache-dir /mnt/shared/nni-suite/artifacts",
          concurrency=2, service=REMOTE,
          notes={"trialConcurrency": "one trial per machine: latency is measured inside the trial"}),
    ]


def _quant() -> list[Config]:
    v = partial(Config, "quant", script="trials/quant.py", trials=16, tuner=GRID)
    return [
        v("config.yml", "quant-full", FULL,
          tuner=noted(GRID, "className", "16 points: try each once rather than sample repeats"),
          notes={"trialConcurrency": ONE_GPU_CPU_LATENCY,
                 "maxTrialNumber": "4 algorithms x 2 bit widths x 2 starting models"}),
        v("config.cpu.yml", "quant-cpu", CPU, notes={"searchSpaceFile": "algorithm x bits x start: the full grid"}),
        v("config.seeds.cpu.yml", "quant-seeds-cpu", CPU, trials=4, space="search_space.seeds.cpu.json",
          notes={"maxTrialNumber": "2 headline configurations x seeds 1, 2"}),
        v("config.smoke.yml", "quant-smoke", f"{SMOKE} --calibration-batches 4", trials=4, duration="30m",
          tuner=TPE_SEED0),
    ]


def _nas() -> list[Config]:
    v = partial(Config, "nas", script="trials/nas.py", trials=6, space="search_space.smoke.json")
    evolved = noted(evolution(4), "population_size", "< maxTrialNumber, so 2 trials are evolved from the first 4",
                    column=27)
    return [
        v("config.yml", "nas-ea-full", NAS_FULL, trials=48, space="search_space.json", tuner=evolution(16),
          notes={"trialConcurrency": ONE_GPU,
                 "maxTrialNumber": "2/3 of the 72 candidates; repeats of an architecture load from the cache"}),
        v("config.cpu.yml", "nas-ea-cpu", NAS_CPU, tuner=evolved),
        v("config.smoke.yml", "nas-ea-smoke", NAS_SMOKE, trials=4, duration="30m",
          tuner=noted(evolution(2), "population_size", "< maxTrialNumber, so 2 trials are evolved from the first 2",
                      column=27)),
    ]


def _nas_rl() -> list[Config]:  # the EA search's trials and sub-spaces (tests/test_nas.py), another tuner
    v = partial(Config, "nas_rl", script="trials/nas.py", trials=6, space="../nas/search_space.smoke.json",
                tuner=REINFORCE_SEED0)
    return [
        v("config.yml", "nas-rl-full", NAS_FULL, trials=48, space="../nas/search_space.json", tuner=REINFORCE_FULL),
        v("config.cpu.yml", "nas-rl-cpu", NAS_CPU),
        v("config.smoke.yml", "nas-rl-smoke", NAS_SMOKE, trials=4, duration="30m"),
    ]


def _pipeline() -> list[Config]:
    v = partial(Config, "pipeline", script="trials/pipeline.py")
    hard_b1 = "--max-latency-ratio-b1 0.3 --budget-penalty hard"  # `default` under a latency budget
    return [
        v("config.yml", "pipeline-full", f"{FULL} --arch results/nas/best_arch.json\n{hard_b1}", trials=32,
          tuner=TPE, notes={"trialConcurrency": ONE_GPU_CPU_LATENCY}),
        v("config.cpu.yml", "pipeline-cpu", f"{CPU}\n{hard_b1}", trials=2, space="search_space.cpu.json", tuner=GRID),
        v("config.seeds.cpu.yml", "pipeline-seeds-cpu", f"{CPU}\n{hard_b1}", trials=4,
          space="search_space.seeds.cpu.json", tuner=GRID,
          notes={"maxTrialNumber": "plain and distilled x seeds 1, 2"}),
        v("config.smoke.yml", "pipeline-smoke",
          f"{SMOKE} --calibration-batches 4\n--max-latency-ratio-b64 0.1 --budget-penalty hard",
          trials=4, duration="30m", space="search_space.smoke.json", tuner=TPE_SEED0),
        v("config.realdata.smoke.yml", "pipeline-realdata-smoke",
          "--profile ci --dataset fashion-mnist --calibration-batches 4", trials=1, duration="15m",
          space="search_space.cpu.json", tuner=GRID,
          notes={"searchSpaceFile": "the default row: fpgm, 0.5, qat, 8 bits"}),
        # MobileNetV2 (issue #30): its own dense model, trained in the first trial and cached.
        v("config.mobilenet.cpu.yml", "pipeline-mobilenet-cpu", f"{CPU} --model mobilenet_v2\n{hard_b1}", trials=1,
          space="search_space.cpu.json", tuner=GRID,
          notes={"maxTrialNumber": "the grid's first point: distill_weight 0, the README's pipeline row"}),
        v("config.mobilenet.smoke.yml", "pipeline-mobilenet-smoke",
          f"{SMOKE} --model mobilenet_v2 --calibration-batches 4", trials=2, duration="30m",
          space="search_space.mobilenet.smoke.json", tuner=GRID),
    ]


def _pareto() -> list[Config]:
    v = partial(Config, "pareto", script="trials/pipeline.py", tuner=nsga2(8))
    return [
        v("config.yml", "pareto-full", f"{FULL} --algorithm qat", trials=64),
        v("config.cpu.yml", "pareto-cpu", f"{CPU} --algorithm qat --distill-weight 0.5", trials=16, duration="4h"),
        v("config.smoke.yml", "pareto-smoke", f"{SMOKE} --calibration-batches 4 --algorithm qat", trials=4,
          duration="30m", tuner=nsga2(4)),
        v("config.uniform.smoke.yml", "pareto-uniform-smoke", f"{SMOKE} --calibration-batches 4 --algorithm qat",
          trials=4, duration="30m", space="search_space.uniform.json", tuner=nsga2(4)),
        # The comparison (issue #29): one tuner, seed, population and trial count; only the space differs.
        *(v(f"config.{kind}.search.yml", f"pareto-{kind}-search", f"{SEARCH} --algorithm qat", trials=12,
            duration="90m", space=space, tuner=nsga2(4),
            notes={"maxTrialNumber": "3 generations of 4, as the other search of the comparison",
                   "maxExperimentDuration": "a safety stop: 12 trials take ~40 min (<= 4 min each)"})
          for kind, space in (("uniform", "search_space.uniform.json"), ("stagewise", "search_space.json"))),
        v("config.confirm.cpu.yml", "pareto-confirm-cpu", f"{CPU} --algorithm qat", trials=5,
          space="search_space.confirm.json", tuner=GRID,
          notes={"maxTrialNumber": "2 budgets x 2 searches + the anchor; fewer when picks coincide"}),
    ]


# ---------------------------------------------------------------------------------------------- YAML blocks


def noted(text: str, key: str, comment: str, column: int = 35) -> str:
    """`text` with an inline comment on the first line that sets `key` (at `column` where the line is shorter)."""
    lines = text.splitlines(keepends=True)
    n = next((i for i, line in enumerate(lines) if line.lstrip().startswith(f"{key}:") and "#" not in line), None)
    if n is None:
        raise KeyError(f"no line sets {key!r} without a comment already: {text!r}")
    line = lines[n].rstrip("\n")
    lines[n] = f"{line.ljust(column - 1)} # {comment}\n" if len(line) < column else f"{line}  # {comment}\n"
    return "".join(lines)


LOCAL = """\
trainingService:
  platform: local
"""

# NNI's tuners through common/nni_compat.py: the same algorithm and classArgs, but a trial that dies before it asks
# for its parameters no longer kills the tuner (stock TPE raises KeyError and the experiment hangs RUNNING).
GRID = """\
tuner:                             # NNI's tuner, wrapped so a trial that dies at start cannot kill it (nni_compat.py)
  codeDirectory: ../..             # the repository root, so the tuner process can import `common`
  className: common.nni_compat.GridSearch
"""

TPE = """\
tuner:                             # NNI's tuner, wrapped so a trial that dies at start cannot kill it (nni_compat.py)
  codeDirectory: ../..             # the repository root, so the tuner process can import `common`
  className: common.nni_compat.TPE
  classArgs:
    optimize_mode: maximize
"""
TPE_SEED0 = TPE + "    seed: 0\n"  # smoke runs sample the same trials every time

MEDIANSTOP = """\
assessor:
  name: Medianstop
  classArgs:
    optimize_mode: maximize
    start_step: 4
"""

EARLY_STOPPING_WHY = """\
# Early stopping. Medianstop stops a trial whose best val accuracy after >= 4 of its 10 fine-tune epochs
# (one intermediate result each) is below the median of the finished trials' running averages at that
# epoch, so a hopeless (pruner, sparsity) can end after 4 epochs instead of 10. Curvefitting was not chosen:
# it extrapolates with parametric learning-curve models meant for long monotone curves, and a 10-epoch
# cosine fine-tune after pruning is neither. Trade-off: a stopped trial ends EARLY_STOPPED with no final
# measurement (latency, size), so it is missing from the report's Pareto plots; delete these 5 lines to
# measure every point. A pruned stage loaded from the cache reports no epochs and is never stopped.
"""

NO_ASSESSOR_WHY = """\
# No assessor on purpose: the trials differ only in the seed, and stopping the seeds that start slower
# than the median would bias the mean +- std this experiment exists to measure. It saves compute only
# where trials compete (experiments/pruning/config.yml uses Medianstop).
"""


def gpu_local(why_half: str) -> str:
    """The local platform with one GPU per trial (experiments/pruning/config.gpu.yml says why half a GPU)."""
    return f"""\
trainingService:
  platform: local
  maxTrialNumberPerGpu: 2          # {why_half}
  useActiveGpu: false              # skip GPUs that other processes use; set true if the only GPU also drives a display
"""


# The remote platform: any experiment moves there by swapping in this block (tests/test_e2e_remote.py does).
REMOTE = """\
trainingService:
  platform: remote
  nniManagerIp: 192.0.2.10         # PLACEHOLDER: an address of the machine running nnictl, reachable from the machines
  machineList:
    - host: 192.0.2.21             # PLACEHOLDER
      port: 22
      user: trainer                # PLACEHOLDER
      sshKeyFile: ~/.ssh/id_ed25519  # a key without passphrase, or add sshPassphrase
      pythonPath: /opt/nni-suite/venv/bin  # the DIRECTORY holding python3 (with requirements.txt installed)
    - host: 192.0.2.22             # PLACEHOLDER
      user: trainer
      sshKeyFile: ~/.ssh/id_ed25519
      # password: ...              # instead of a key: NNI shows it in plain text in the web UI
      pythonPath: /opt/nni-suite/venv/bin
  # GPUs: add `trialGpuNumber: 1` above `platform:` and, per machine, `useActiveGpu: false` and
  # `maxTrialNumberPerGpu: 2` (see config.gpu.yml for why 2; NNI's remote platform shares the scheduler).
#
# Kubernetes / AML (sketches; not tested here). The trial image must contain requirements.txt, and the
# cache must be a volume all pods share:
#   trainingService:
#     platform: frameworkcontroller       # or kubeflow
#     storage: {storageType: nfs, server: 192.0.2.30, path: /exports/nni}   # trial code + NNI outputs
#     taskRoles:
#       - name: worker
#         taskNumber: 1
#         command: python3 trials/prune.py --profile full --data-dir /mnt/nni/data --cache-dir /mnt/nni/artifacts
#         gpuNumber: 1
#         cpuNumber: 4
#         memorySize: 16g
#         dockerImage: registry.example/nni-suite:latest
#         frameworkAttemptCompletionPolicy: {minFailedTaskCount: 1, minSucceedTaskCount: 1}
#   trainingService:
#     platform: aml
#     subscriptionId: ...  resourceGroup: ...  workspaceName: ...  computeTarget: gpu-cluster
#     dockerImage: registry.example/nni-suite:latest   # data + cache: a mounted datastore (--data-dir/--cache-dir)
"""


def hyperband(r: int, eta: int) -> str:
    """NNI's Hyperband advisor with its string-id crash fixed (common/nni_compat.py)."""
    return f"""\
tuner:
  codeDirectory: ../..             # relative to this file: the repository root, put on the dispatcher's sys.path
  className: common.nni_compat.Hyperband
  classArgs:
    optimize_mode: maximize
    R: {r}
    eta: {eta}
"""


def evolution(population: int) -> str:
    return f"""\
tuner:                   # NNI's naive evolution: random population, then tournament + one-key mutation
  codeDirectory: ../..     # the repository root; the class is NNI's, wrapped as nni_compat.py says
  className: common.nni_compat.Evolution
  classArgs:
    optimize_mode: maximize
    population_size: {population}
"""


REINFORCE_FULL = """\
tuner:
  codeDirectory: ../..
  className: common.rl_tuner.ReinforceTuner
  classArgs:
    optimize_mode: maximize
    learning_rate: 0.3
    baseline_decay: 0.8
    entropy_weight: 0.05
"""

REINFORCE_SEED0 = """\
tuner:
  codeDirectory: ../..     # the repository root, so the tuner process can import `common`
  className: common.rl_tuner.ReinforceTuner
  classArgs:
    optimize_mode: maximize
    seed: 0
"""


def nsga2(population: int) -> str:
    """The multi-objective tuner (common/pareto_tuner.py): the objectives are result keys."""
    return f"""\
tuner:
  codeDirectory: ../..     # the repository root, so the tuner process can import `common`
  className: common.pareto_tuner.ParetoTuner
  classArgs:
    # Result keys and directions. Ratios to the dense model measured in the same trial: a shared machine's
    # milliseconds drift, ratios do not. packed_size_ratio counts 4-bit weights at 4 bits (size_ratio is the
    # int8 file, where 4-bit weights take a byte each and per-stage bits could not pay off).
    objectives: {{val_acc: maximize, latency_ratio_b1: minimize, packed_size_ratio: minimize}}
    seed: 0
    population_size: {population}
"""


CONFIGS: list[Config] = [*_baseline(), *_pruning(), *_quant(), *_nas(), *_nas_rl(), *_pipeline(), *_pareto()]


# ----------------------------------------------------------------------------------------------- rendering

GENERATED = "# Generated from common/configs.py by `python3 -m common.cli.configs render --write`: edit it there."
DEFAULT_NOTES = {"trialCodeDirectory": "relative to this file: the repository root"}


def render(config: Config) -> str:
    """The file's text: its prose, the settings in the order NNI documents them, then the YAML blocks."""
    prose = [f"# {line}".rstrip() for line in HEADERS[config.path].splitlines()]
    settings = {
        "experimentName": config.name,
        "searchSpaceFile": config.space,
        "trialCodeDirectory": "../..",
        "trialCommand": f"python3 {config.script} {config.flags}",
        "trialConcurrency": config.concurrency,
        "maxTrialNumber": config.trials,
        "maxExperimentDuration": config.duration,
        "trialGpuNumber": config.gpus,
    }
    text = "\n".join([GENERATED, *prose, *(f"{k}: {_scalar(v)}" for k, v in settings.items() if v is not None)]) + "\n"
    text += config.tuner + config.assessor + (config.service or LOCAL)
    for key, comment in {**DEFAULT_NOTES, **config.notes}.items():
        text = noted(text, key, comment)
    return text


def _scalar(value: str | int) -> str:
    text = str(value)
    if "\n" in text:  # folded (`>-`): NNI reads the lines joined by spaces
        return ">-" + "".join(f"\n  {line}" for line in text.splitlines())
    # Plain where YAML reads it back as the same value (paths, durations, commands), quoted otherwise.
    return text if yaml.safe_load(f"k: {text}") == {"k": value} else json.dumps(value)


# The prose each file starts with (after the line saying it is generated), without its "# ".
SEEDS = """Seeds 1 and 2 of the headline configurations (seed 0 is in config.cpu.yml's grid): with them the report shows
mean ± std over three seeds, each seed's Δ against its own dense model (train experiments/baseline/config.cpu.yml,
seeds 0-2, first)."""

HEADERS: dict[str, str] = {
    "baseline/config.yml": """\
The dense CIFAR ResNet-18 baseline, one trial per seed (mean ± std across seeds in the report).
Each trial trains once and stores the model in the artifact cache, which every other experiment reuses.
  nnictl create --config experiments/baseline/config.yml --port 8080
""",
    "baseline/config.gpu.yml": """\
config.yml with one GPU per trial (one seed per GPU), for machines with NVIDIA GPUs.
  nnictl create --config experiments/baseline/config.gpu.yml --port 8080
Set trialConcurrency to the number of GPUs (3 seeds: at most 3). Why this is a separate file and why
maxTrialNumberPerGpu is 2: see experiments/pruning/config.gpu.yml.
""",
    "baseline/config.cpu.yml": """\
The dense ResNet-18 on real images on a 2-core CPU: Fashion-MNIST, the `cpu` profile (common/profiles.py),
seeds 0, 1 and 2. Seed 0 is the model every other config.cpu.yml compresses: run this first. Each seed trains
once (3 passes, bf16 on AMX: 31-33 min measured on the 2 cores beside other work; fp32 elsewhere) and is cached.
  nnictl create --config experiments/baseline/config.cpu.yml --port 8080
""",
    "pruning/config.yml": """\
Experiment 1 of the seed report at full scale: L1 / FPGM / L2 filter pruning of CIFAR ResNet-18,
sparsity 0.2-0.8, fine-tuned after pruning. Needs CIFAR-10 (downloaded on first use) and a GPU.
  nnictl create --config experiments/pruning/config.yml --port 8080
The tuner maximises `default` = validation accuracy (held out from the training set);
test accuracy, latency, params, FLOPs and size are reported beside it.
""",
    "pruning/config.gpu.yml": """\
config.yml with one GPU per trial, for machines with NVIDIA GPUs (NNI's GPU scheduling, local platform).
  nnictl create --config experiments/pruning/config.gpu.yml --port 8080
Set trialConcurrency to the number of GPUs: each trial gets a GPU of its own (CUDA_VISIBLE_DEVICES) and
uses it as cuda:0 (`--device auto`). Everything but the GPU lines is config.yml's.

Why a separate file: NNI 3.0 cannot say "one GPU per trial if there are GPUs, else CPU".
  - With trialGpuNumber >= 1 on a machine without an NVIDIA driver, the NNI manager shuts itself down
    ~10 s after `nnictl create` reported success ("TaskScheduler: Failed to collect GPU info" in
    nnimanager.log; checked on this project's CPU machines). So config.yml schedules no GPUs: it runs
    everywhere, and on a GPU machine its trials use cuda:0 (right for one GPU and trialConcurrency 1).
  - `trialGpuNumber: 1` + `maxTrialNumberPerGpu: 1` (the obvious setting) never starts a trial on a
    ONE-GPU machine: NNI 3.0's scheduler rejects any request for >= all of a machine's GPUs
    (nni_node/common/trial_keeper/task_scheduler/scheduler.js:51 `if (gpuNumber >= this.gpus.length)`),
    and the manager retries without pause (training_service/v3/compat.js:84) until it stops answering.
    Asking for half a GPU (maxTrialNumberPerGpu: 2) passes that check; the scheduler gives each trial the
    least-used GPU, so with trialConcurrency <= the number of GPUs no two trials share one.
    (tests/test_e2e_gpu.py checks this placement against a fake NVML reporting 1 and 2 GPUs.)
""",
    "pruning/config.cpu.yml": """\
L1 / FPGM filter pruning at 30/50/70 % of the cached dense ResNet-18 on Fashion-MNIST, on a 2-core CPU
(`cpu` profile: one pass of fine-tuning, 2 x 211 steps of 128 images). 6 trials of ~5-10 min each; the dense
model comes from experiments/baseline/config.cpu.yml (trained here first, ~30 min, if it is not cached yet).
Add `--distill-weight 0.5` to the trial command to fine-tune from the dense model as teacher.
  nnictl create --config experiments/pruning/config.cpu.yml --port 8080
""",
    "pruning/config.smoke.yml": """\
Offline CPU smoke run of the pruning experiment: synthetic data, 1 epoch, a few trials in minutes.
  nnictl create --config experiments/pruning/config.smoke.yml --port 8080
Smoke accuracies only show that the pipeline works; they say nothing about CIFAR-10.
""",
    "pruning/config.hyperband.yml": """\
Multi-fidelity variant of the pruning experiment: Hyperband spends few fine-tune epochs on many
(pruner, sparsity) configurations and more on the best ones (successive halving).
  nnictl create --config experiments/pruning/config.hyperband.yml --port 8080
Each trial gets NNI's TRIAL_BUDGET with its parameters and fine-tunes for that many epochs
(common/trial.py: `--trial-budget`); every budget is a separate cached stage, so a promoted
configuration is pruned again and fine-tuned from the dense model for its larger budget.
R=9, eta=3: brackets of 9x1 -> 3x3 -> 1x9, 5x3 -> 1x9 and 3x9 epochs: 22 trials and 78 fine-tune
epochs per Hyperband iteration, against 210 for the TPE config's 21 trials x 10 epochs.
NNI 3.0's own Hyperband crashes on its string parameter ids (nni/recoverable.py:49) and leaves the
experiment RUNNING forever; common.nni_compat.Hyperband is the same advisor with that fixed.
BOHB (model-based Hyperband): className common.nni_compat.BOHB with classArgs {optimize_mode: maximize,
min_budget: 1, max_budget: 9, eta: 3} after `pip install "nni[BOHB]"` (not tested here).
""",
    "pruning/config.hyperband.smoke.yml": """\
Offline CPU smoke run of the Hyperband pruning variant (config.hyperband.yml): synthetic data,
budgets of 1 and 2 fine-tune epochs. R=2, eta=2: two configurations x 1 epoch, the better one (or a
new bracket's configuration) x 2 epochs; 3 trials in a few minutes.
  nnictl create --config experiments/pruning/config.hyperband.smoke.yml --port 8080
""",
    "pruning/config.remote.yml": """\
The pruning experiment on other machines over SSH (NNI's `remote` training service).
  nnictl create --config experiments/pruning/config.remote.yml --port 8080
Any experiment moves from local to remote by replacing only its `trainingService:` block with the one
below (and, for more than one machine, raising trialConcurrency); tests/test_e2e_remote.py does exactly
that with the smoke config against an sshd on 127.0.0.1.

What NNI does: it copies trialCodeDirectory (the repository root, a few MB) to every machine with
sftp and runs trialCommand there, with `pythonPath` first on PATH. Each machine needs only:
  - Python with this repository's requirements.txt installed (NNI's worker also runs
    `python -m pip install nni --upgrade` there: keep nni==3.0 pinned in that environment);
  - the data and the artifact cache on storage all machines share (NFS, a mounted bucket), so the
    dense baseline is trained once and every machine reuses it (the cache's flock-based lock holds
    across machines on Linux NFS mounts with locking enabled). Point the trials at it with
    --data-dir/--cache-dir (below) or NNI_SUITE_HOME in the remote user's environment.
    Offline machines: put cifar-10-python.tar.gz in the data dir.
  - to reach this machine back at nniManagerIp (trials report their metrics to it over websocket/HTTP on --port).
""",
    "quant/config.yml": """\
Experiment 2 of the seed report at full scale: NNI's PTQ / QAT / LSQ / DoReFa quantizers at 8 and 4
weight bits, from the dense or the 50%-FPGM-pruned ResNet-18 (both from the artifact cache, trained or
pruned there on first use), each deployed as a real int8 ONNX Runtime model on the CPU.
Needs CIFAR-10 (downloaded on first use); fine-tuning wants a GPU, latency is always measured on CPU.
  nnictl create --config experiments/quant/config.yml --port 8080
The tuner maximises `default` = validation accuracy of the deployed int8 model (what ships); the
simulated model's accuracy, their top-1 agreement, latency (fp32 torch / fp32 ORT / int8 ORT, b1/b64)
and sizes (int8 file, 4-bit packed) are reported beside it.
""",
    "quant/config.cpu.yml": """\
NNI's PTQ / QAT / LSQ / DoReFa at 8 and 4 weight bits, from the dense or the 50%-FPGM-pruned ResNet-18,
each deployed as a real int8 ONNX Runtime model, on Fashion-MNIST on a 2-core CPU (`cpu` profile).
16 trials of <= 10 min each (QAT-like trials fine-tune 2 x 32 steps in fp32); the dense model comes from
experiments/baseline/config.cpu.yml, the pruned one is built by the first trial that starts from it.
  nnictl create --config experiments/quant/config.cpu.yml --port 8080
""",
    "quant/config.smoke.yml": """\
Offline CPU smoke run of the quantization experiment: synthetic data, 1 fine-tune epoch, 4 trials in
minutes (the dense baseline, and the pruned model if a trial asks for it, are built once, cached).
  nnictl create --config experiments/quant/config.smoke.yml --port 8080
Smoke accuracies only show that the pipeline works; they say nothing about CIFAR-10.
""",
    "nas/config.yml": """\
Experiment 3 of the seed report at full scale: evolutionary (EA) architecture search over the
ResNet macro space of common/nas.py (stages 2-4, blocks 1-2, width 16-64, ReLU/Tanh, 3x3/5x5;
ResNet-18 is one of its 72 candidates). Each candidate trains with the full profile's recipe on
CIFAR-10 (downloaded on first use); needs a GPU.
  nnictl create --config experiments/nas/config.yml --port 8080
  python3 -m common.cli.nas export <experiment-id> --out best_arch.json
`default` = val_acc within budget, val_acc * (budget / params) above it (common/objective.py):
here at most half of ResNet-18's parameters. Drop --max-params-ratio to search for accuracy
alone, or add e.g. --max-latency-ms-b1 2.0 for a latency budget on the trial's device.
Test accuracy, latency b1/b64, params, FLOPs, size (and ratios to ResNet-18) are reported beside it.
The search space is generated: edit common/nas.py, then `python3 -m common.cli.nas render --write`.
""",
    "nas/config.cpu.yml": """\
Evolutionary architecture search on Fashion-MNIST on a 2-core CPU (`cpu` profile): the smoke sub-space
(depth x activation x kernel at width 16, one block per stage: 12 small candidates), 6 trials of a few
minutes each. --compare-baseline loads the cached dense ResNet-18 (experiments/baseline/config.cpu.yml).
  nnictl create --config experiments/nas/config.cpu.yml --port 8080
  python3 -m common.cli.nas export <experiment-id> --out results/nas/best_arch.json
""",
    "nas/config.smoke.yml": """\
Offline CPU smoke run of the EA architecture search: synthetic data, 3 epochs, narrow candidates
(depth x activation x kernel at width 16, one block per stage: search_space.smoke.json),
4 trials in a few minutes.
  nnictl create --config experiments/nas/config.smoke.yml --port 8080
  python3 -m common.cli.nas export <experiment-id> --out best_arch.json
`default` = val_acc, penalised above 250k parameters (common/objective.py). Smoke accuracies only
show that the pipeline works; they say nothing about CIFAR-10.
""",
    "nas_rl/config.yml": """\
Experiment 3 of the seed report at full scale, reinforcement-learning strategy: a REINFORCE
policy-gradient controller (common/rl_tuner.py, an NNI customized tuner: same engine, web UI and
export as the EA run in experiments/nas/) samples candidates of the ResNet macro space of
common/nas.py; each trains with the full profile's recipe on CIFAR-10. Needs a GPU.
  nnictl create --config experiments/nas_rl/config.yml --port 8080
  python3 -m common.cli.nas export <experiment-id> --out best_arch.json
`default` = val_acc within budget, val_acc * (budget / params) above it: at most half of
ResNet-18's parameters, as in the EA run, so the two strategies are compared on one objective.
""",
    "nas_rl/config.cpu.yml": """\
Reinforcement-learning (REINFORCE) architecture search on Fashion-MNIST on a 2-core CPU (`cpu` profile):
the same trial, sub-space (12 small candidates) and objective as experiments/nas/config.cpu.yml, a
policy-gradient tuner (common/rl_tuner.py) instead of Evolution. Candidates the EA run already trained
come from the cache. --compare-baseline loads the cached dense ResNet-18 (experiments/baseline/config.cpu.yml).
  nnictl create --config experiments/nas_rl/config.cpu.yml --port 8080
  python3 -m common.cli.nas export <experiment-id> --out results/nas/best_arch.json
""",
    "nas_rl/config.smoke.yml": """\
Offline CPU smoke run of the reinforcement-learning (REINFORCE) architecture search: the same
trial, sub-space and objective as experiments/nas/config.smoke.yml, a policy-gradient tuner
(common/rl_tuner.py) instead of Evolution. 4 trials in a few minutes.
  nnictl create --config experiments/nas_rl/config.smoke.yml --port 8080
  python3 -m common.cli.nas export <experiment-id> --out best_arch.json
Smoke accuracies only show that the pipeline works; they say nothing about CIFAR-10.
""",
    "pipeline/config.yml": """\
Experiment 4 of the seed report at full scale: the architecture NAS found → pruned (pruner and
sparsity searched) → quantized (NNI quantizer and weight bits searched) → deployed as a real int8
ONNX Runtime model, every stage measured beside the dense ResNet-18 baseline. Needs CIFAR-10 and a GPU.
First run the NAS experiment and export its best architecture to the path trialCommand names:
  nnictl create --config experiments/nas/config.yml --port 8080
  python3 -m common.cli.nas export <nas-experiment-id> --out results/nas/best_arch.json
  nnictl create --config experiments/pipeline/config.yml --port 8081
(`--arch resnet18` instead compresses the baseline itself.) The trained architecture and each
(pruner, sparsity) model are cached, so trials that share them train them once.
`default` = validation accuracy of the deployed int8 model *under a budget*: its batch-1 latency at most
30% of the dense ResNet-18's, measured interleaved in the same trial. The penalty is hard (common/objective.py):
every trial within budget outranks every trial over it, so the best trial meets the budget whenever any
trial does; over-budget trials still report all their metrics, and the report marks them.
""",
    "pruning/config.seeds.cpu.yml": """\
The README's pruning rows on seeds 1 and 2: FPGM 50 % one-shot, gradual (3 rounds) and distilled, L1 50 %
one-shot, as a nested-choice grid (each `variant` sets its flags) on Fashion-MNIST, `cpu` profile.
""" + SEEDS + """
  nnictl create --config experiments/pruning/config.seeds.cpu.yml --port 8080
""",
    "quant/config.seeds.cpu.yml": """\
The README's quantization rows on seeds 1 and 2: QAT 8-bit from the dense model and LSQ 4-bit from the 50 %
FPGM model (built by pruning/config.seeds.cpu.yml, or here if it is not cached), on the portable grid.
""" + SEEDS + """
  nnictl create --config experiments/quant/config.seeds.cpu.yml --port 8080
""",
    "pipeline/config.seeds.cpu.yml": """\
The README's pipeline rows on seeds 1 and 2: ResNet-18 → 50 % FPGM → QAT 8-bit → int8, plain and distilled.
""" + SEEDS + """
  nnictl create --config experiments/pipeline/config.seeds.cpu.yml --port 8080
""",
    "pipeline/config.cpu.yml": """\
The combined pipeline on Fashion-MNIST on a 2-core CPU (`cpu` profile): ResNet-18 → 50 % FPGM → QAT 8-bit →
int8 on the portable grid, plain and with both fine-tunes distilled from the dense model (distill_weight 0.5),
every stage measured beside the dense model (two trials, <= 12 min each once the dense model from
experiments/baseline/config.cpu.yml is cached). Widen
search_space.cpu.json (e.g. to search_space.json's ranges) for a search; each (pruner, sparsity) adds one
cached pruned model.
  nnictl create --config experiments/pipeline/config.cpu.yml --port 8080
  python3 -m common.cli.report <experiment-id> --out results/pipeline-cpu
""",
    "pipeline/config.mobilenet.cpu.yml": """\
The recorded MobileNetV2 row (issue #30): the README's pipeline point, FPGM 50 % → QAT 8-bit → int8 on the
portable grid, for torchvision's MobileNetV2 adapted to small images (common/models.py), on Fashion-MNIST at
the `cpu` profile. One trial: it trains MobileNetV2's own dense model first (cached), then compresses it;
35-55 min in all, estimated (docs/experiments.md).
  nnictl create --config experiments/pipeline/config.mobilenet.cpu.yml --port 8080
  python3 -m common.cli.report <experiment-id> --out results/pipeline-mobilenet-cpu
""",
    "pipeline/config.mobilenet.smoke.yml": """\
Offline CPU smoke run of the combined pipeline on MobileNetV2 (depthwise convolutions, inverted residuals):
its dense model trained once on synthetic data, pruned 50 % by FPGM and by L1, each QAT 8-bit and deployed
int8 (search_space.mobilenet.smoke.json). The suite runs it (tests/test_e2e_own_model.py).
  nnictl create --config experiments/pipeline/config.mobilenet.smoke.yml --port 8080
""",
    "pipeline/config.smoke.yml": """\
Offline CPU smoke run of the combined pipeline: synthetic data, ResNet-18 (the smoke baseline is cached
and shared with the other smoke experiments), 1 fine-tune epoch, 4 trials in a few minutes.
  nnictl create --config experiments/pipeline/config.smoke.yml --port 8080
  python3 -m common.cli.report <experiment-id> --out results/pipeline
Budget: batch-64 latency of the deployed int8 model at most 10% of the dense ResNet-18's (hard penalty),
so the lowest sparsities miss it and the report marks them. Smoke accuracies only show that the pipeline
works; they say nothing about CIFAR-10.
""",
    "pipeline/config.realdata.smoke.yml": """\
Real-data smoke run of the combined pipeline (CI: tests/test_e2e_realdata.py): the `ci` profile, 1,024
Fashion-MNIST training images at 16x16 from Debian's dataset-fashion-mnist (or torchvision's layout in the
data dir), ResNet-18 → 50 % FPGM → QAT → int8 ONNX Runtime, one trial in about a minute on 2 idle cores.
  nnictl create --config experiments/pipeline/config.realdata.smoke.yml --port 8080
""",
    "pareto/config.yml": """\
The accuracy / latency / size search at full scale (CIFAR-10, GPU, `full` profile):
NSGA-II (common/pareto_tuner.py) over a sparsity and weight bits per ResNet stage (search_space.json,
common/stagewise.py); each trial is the
pipeline (prune per stage -> fine-tune -> QAT per stage -> int8 on the portable 7-bit grid) beside the
dense model. 64 trials: 8 generations of 8.
  nnictl create --config experiments/pareto/config.yml --port 8080
  python3 -m common.cli.report pick <experiment-id> --max-latency-ratio-b1 0.5 --max-size-ratio 0.2
""",
    "pareto/config.cpu.yml": """\
The accuracy / latency / size search on Fashion-MNIST on a 2-core CPU (`cpu` profile, cached dense model):
NSGA-II (common/pareto_tuner.py) over a sparsity and weight bits per ResNet stage (search_space.json,
common/stagewise.py); each trial is the
pipeline (prune per stage -> fine-tune -> QAT per stage -> int8 on the portable 7-bit grid) beside the
dense model. 16 trials of <= 10 min each; against a uniform search at equal cost: config.*.search.yml.
  nnictl create --config experiments/pareto/config.cpu.yml --port 8080
  python3 -m common.cli.report pick <experiment-id> --max-latency-ratio-b1 0.5 --max-size-ratio 0.2
""",
    "pareto/config.uniform.smoke.yml": """\
Offline CPU smoke run of the uniform side of the comparison (config.uniform.search.yml): NSGA-II over one
sparsity and one weight bit width for all stages (search_space.uniform.json), otherwise config.smoke.yml.
  nnictl create --config experiments/pareto/config.uniform.smoke.yml --port 8080
  python3 -m common.cli.report compare <uniform-id> <stagewise-id> --out results/pareto-smoke
""",
    "pareto/config.uniform.search.yml": """\
The comparison, uniform side (issue #29): NSGA-II over one sparsity and one weight bit width for all ResNet
stages (search_space.uniform.json), with the tuner, seed, population and trial count of
config.stagewise.search.yml; only the space differs. `search` profile (common/profiles.py): the cached dense
model of experiments/baseline/config.cpu.yml, a short fine-tune and QAT, accuracy on 1,000 val / test images,
no portability check; ~3 min a trial estimated (<= 4 min to be measured: `trial_seconds`).
  nnictl create --config experiments/pareto/config.uniform.search.yml --port 8080
Both sides, and the dense model first, in one command, one after the other (docs/experiments.md):
  python3 -m common.cli.record --pareto-unit --ids results/pareto/recording.txt
  python3 -m common.cli.report compare <uniform-id> <stagewise-id> --out results/pareto
""",
    "pareto/config.stagewise.search.yml": """\
The comparison, per-stage side (issue #29): NSGA-II over a sparsity and weight bits per ResNet stage
(search_space.json), with the tuner, seed, population and trial count of config.uniform.search.yml; only the
space differs. `search` profile, as there.
  nnictl create --config experiments/pareto/config.stagewise.search.yml --port 8080
Both sides in one command, one after the other (docs/experiments.md):
  python3 -m common.cli.record --pareto-unit --ids results/pareto/recording.txt
  python3 -m common.cli.report compare <uniform-id> <stagewise-id> --out results/pareto
""",
    "pareto/config.confirm.cpu.yml": """\
The comparison's confirmation (issue #29): the points it picked re-trained at the full `cpu` profile, with the
portability check, one GridSearch trial each (~10 min). search_space.confirm.json holds the anchor (FPGM 50 %,
8 bits in every stage: the README's pipeline row); the recorder adds the picks of a comparison report:
  nnictl create --config experiments/pareto/config.confirm.cpu.yml --port 8080           # the anchor alone
  python3 -m common.cli.record --pareto-confirm results/pareto/report.json --ids results/pareto/confirm.txt
  python3 -m common.cli.report compare <uniform-id> <stagewise-id> --confirm <confirm-id> --out results/pareto
""",
    "pareto/config.smoke.yml": """\
Offline CPU smoke run of the accuracy / latency / size search: NSGA-II (common/pareto_tuner.py) over a
sparsity and weight bits per ResNet stage (search_space.json, common/stagewise.py); each trial is the
pipeline (prune per stage -> fine-tune -> QAT per stage -> int8 on the portable 7-bit grid) beside the
dense model. 4 trials in a few minutes; smoke accuracies only show that the search works.
  nnictl create --config experiments/pareto/config.smoke.yml --port 8080
  python3 -m common.cli.report pick <experiment-id> --max-latency-ratio-b1 0.5 --max-size-ratio 0.2
""",
}
