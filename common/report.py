"""Build the seed report's comparison table and trade-off plots from NNI experiments' trials.

This module is also the suite's one trial reader: the report (`python3 -m common.cli.report`) and the NAS export
(`python3 -m common.cli.nas export`) both take `TrialRecord`s from it and rank them by `common.record.ranking`.
`write_report` writes report.md, report.json and the plots. Trials come from:

- `load_experiment(id)`: the experiment's own sqlite database `<logDir>/<id>/db/nni.sqlite`, read-only, found
  through nnictl's registry `~/nni-experiments/.experiment`: a finished *or* running experiment, no manager needed.
- `load_manager(port)`: a running manager, through `nni.experiment.Experiment.connect(port).list_trial_jobs()`;
  for a manager whose files are not on this machine (another container, a forwarded port).
- `load_export(file)`: `nnictl experiment export --type json` files, for experiments from another machine.

What reads NNI's files directly, and why. `load_experiment` and `experiment_config` (the tuner's objectives) read
the database and the registry: in NNI 3.0 every query of `nni.experiment` (`list_trial_jobs`, `export_data`,
`get_job_statistics`, ...) is a REST call to a running manager, a stopped experiment has only its database, and
`Experiment(id).view()` would start a manager (a node process on a free port, seconds, stopped again) just to serve
the same rows; the database also reads while the experiment runs. The registry is read as JSON rather than
through nnictl's `Experiments` class, which creates folders and a lock file. `last_log_line` reads the trials'
trial.log files: no NNI API returns a trial's output. Nothing else in the suite reads NNI's files.

Whatever the source, parameters come from the copy each trial echoes in its final result, never from NNI's
parameter listing, which pairs trials with the wrong parameters under trialConcurrency >= 2 (NNI #5693, #5726);
the listing is kept only to say what a trial without a result was given, and to point out a mis-pairing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import sqlite3
import statistics
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from common.front import Front, front
from common.pareto import non_dominated
from common.record import SIZE_KINDS, Latency, Measurement, ranking, read, read_comparison, upgrade

if TYPE_CHECKING:
    from nni.experiment import Experiment

# Which trial script produced a result, as echoed in its `trial` key, and its row in the table.
STAGES: tuple[tuple[str, str], ...] = (
    ("prune", "best pruned"),
    ("quant", "best quantized"),
    ("nas", "best NAS architecture"),
    ("pipeline", "best combined (NAS → prune → quantize)"),
)


# Short column labels of SIZE_KINDS.
SIZE_LABELS = {"state_dict": "fp32 state dict", "fp32_onnx": "fp32 ONNX", "int8_onnx": "int8 ONNX", "packed": "packed"}
assert set(SIZE_LABELS) == set(SIZE_KINDS)


class ReportError(RuntimeError):
    pass


@dataclass(frozen=True)
class TrialRecord:
    experiment: str
    trial_id: str
    status: str
    result: dict[str, Any] | None  # the final result dict (echoed parameters included), None if none
    parameters: dict[str, Any] | None = None  # as NNI lists them: the only copy a trial that failed has
    last_log_line: str = ""  # of its trial.log: `TRIAL FAILED: <reason>` for a trial that failed

    @property
    def ok(self) -> bool:
        return self.status == "SUCCEEDED" and self.result is not None


def _registry(path: Path | None = None) -> dict[str, Any]:
    """nnictl's registry: `path` (its `.experiment` file, or the folder holding it), default
    ~/nni-experiments/.experiment; ReportError naming the file when it is missing or not a registry."""
    path = path or Path.home() / "nni-experiments"
    if path.is_dir():
        path = path / ".experiment"
    try:
        registry = json.loads(path.read_text())
    except FileNotFoundError:
        raise ReportError(f"nnictl registry {path} does not exist (no experiment was created with it); "
                          "for an experiment from another machine pass --export FILE") from None
    except (OSError, ValueError) as err:
        raise ReportError(f"nnictl registry {path} cannot be read ({type(err).__name__}: {err})") from None
    if not isinstance(registry, dict) or not all(isinstance(e, dict) for e in registry.values()):
        raise ReportError(f"nnictl registry {path} is not nnictl's experiment registry (a JSON object of experiments)")
    return registry


def _parse_metric(data: str) -> Any:
    # NNI stores the reported value JSON-encoded, and the whole record JSON-encoded again.
    value = json.loads(data)
    return json.loads(value) if isinstance(value, str) else value


# What NNI 3.0 puts before each line a trial prints to stdout in trial.log: `[2026-12-08 02:55:22] PRINT `.
_NNI_PRINT = re.compile(r"^\[[^]]*\] PRINT ")


def last_log_line(trial_dir: str | Path | None, fallback: Iterable[Path] = ()) -> str:
    """The last non-empty line of a trial's trial.log (in `trial_dir`, else the first of `fallback` that exists),
    without NNI's `[time] PRINT ` prefix: what the trial printed."""
    candidates = [Path(str(trial_dir).removeprefix("file://localhost:")) / "trial.log"] if trial_dir else []
    for path in [*candidates, *fallback]:
        try:
            with open(path, "rb") as f:
                f.seek(max(0, f.seek(0, 2) - 4096))
                lines = [line.strip() for line in f.read().decode(errors="replace").splitlines() if line.strip()]
        except OSError:
            continue
        return _NNI_PRINT.sub("", lines[-1]) if lines else "(trial.log is empty)"
    return "(no trial.log found)"


def failure_listing(records: Sequence[TrialRecord]) -> str:
    """One line per trial without a result: status, parameters, and why it ended (its trial.log's last line)."""
    return "\n".join(f"  {r.experiment} {r.trial_id} {r.status} parameters={json.dumps(r.parameters)}: "
                     f"{r.last_log_line or '(no log)'}" for r in records if not r.ok)


def _database(exp_id: str, registry_path: Path | None = None) -> Path:
    """The experiment's own sqlite database, found through nnictl's registry; ReportError if there is none."""
    registry = _registry(registry_path)
    if exp_id not in registry:
        known = ", ".join(sorted(registry)) or "none"
        raise ReportError(f"unknown experiment id {exp_id!r} (nnictl knows: {known}); "
                          "for an experiment from another machine pass --export FILE")
    db = Path(registry[exp_id].get("logDir") or Path.home() / "nni-experiments") / exp_id / "db" / "nni.sqlite"
    if not db.exists():
        raise ReportError(f"experiment {exp_id}: database {db} is missing (was the experiment deleted?)")
    return db


def _warn_if_tuner_died(exp_id: str, experiment_dir: Path, registry_path: Path | None) -> None:
    """NNI keeps an experiment whose tuner (dispatcher) died RUNNING, silently (issue #27): say so in one line; the
    report goes on with the trials it has."""
    import sys

    from common.nni_compat import dispatcher_failure

    why = _registry(registry_path)[exp_id].get("status") == "RUNNING" and dispatcher_failure(experiment_dir)
    if why:
        print(f"warning: experiment {exp_id}: NNI's tuner process (dispatcher) exited ({why}); no trial will start "
              f"again though NNI says RUNNING (nnictl stop {exp_id})", file=sys.stderr)


def load_experiment(exp_id: str, registry_path: Path | None = None) -> list[TrialRecord]:
    """All trials of one experiment from its sqlite database (read-only; works while it runs)."""
    db = _database(exp_id, registry_path)
    _warn_if_tuner_died(exp_id, db.parents[1], registry_path)
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        status: dict[str, str] = {}
        params: dict[str, Any] = {}
        log_dirs: dict[str, str] = {}
        events = "SELECT trialJobId, event, data, logPath FROM TrialJobEvent ORDER BY timestamp"
        for trial_id, event, data, log_path in con.execute(events):
            if event not in ("ADD_CUSTOMIZED", "ADD_HYPERPARAMETER"):
                status[trial_id] = event
            if data:  # the WAITING/RUNNING events carry the parameters NNI sent
                with contextlib.suppress(ValueError, AttributeError):
                    params[trial_id] = json.loads(data).get("parameters")
            if log_path:
                log_dirs[trial_id] = log_path
        query = "SELECT trialJobId, data FROM MetricData WHERE type='FINAL'"
        finals = {t: _parse_metric(d) for t, d in con.execute(query)}
    finally:
        con.close()
    # Why a trial ended without a result: NNI 3.0 writes trial.log under environments/<env>/trials/<id>/.
    return [_trial_record(exp_id, t, s, finals.get(t), params.get(t), log_dirs.get(t),
                         sorted(db.parents[1].glob(f"**/trials/{t}/trial.log")))
            for t, s in sorted(status.items())]


def _trial_record(exp_id: str, trial_id: str, status: str, final: Any, parameters: dict[str, Any] | None,
                 log_dir: str | None, fallback: Iterable[Path] = ()) -> TrialRecord:
    """One trial as every reader returns it, from what NNI keeps of it: its last status, final result, the
    parameters NNI lists and its trial folder (for the last line of trial.log when it has no result)."""
    result = final if isinstance(final, dict) else None
    tail = "" if status == "SUCCEEDED" and result else last_log_line(log_dir, fallback)
    if status in ("RUNNING", "WAITING") and tail.startswith("TRIAL FAILED"):  # killed by `nnictl stop`: no event
        status = "FAILED"
    if final is not None and result is None:
        tail = f"reported {final!r}, not a result of this suite (an experiment of another kind?)"
    return TrialRecord(exp_id, trial_id, status, result, parameters, tail)


@contextlib.contextmanager
def _quiet_nni() -> Iterator[None]:
    # nni.experiment logs each connection (INFO) and each failed request (ERROR) to stdout, where the commands
    # print their result; a failure reaches the user once, as a ReportError.
    log = logging.getLogger("nni.experiment")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


def _connect(port: int) -> Experiment:
    from nni.experiment import Experiment  # here: its import takes a second, and only this reader needs it

    try:
        with _quiet_nni():
            # connect() only attaches: it starts nothing and, unlike run() or view(), stops nothing at exit.
            return Experiment.connect(port)
    except psutil.Error:
        # connect() also looks up the manager's process, which only stop() needs; a manager in another
        # container or behind a forwarded port has no process here, and reading needs only its REST API.
        exp = Experiment(None)
        exp.port = port
        with _quiet_nni():
            exp.id = exp.get_experiment_profile()["id"]
        return exp


def load_manager(port: int, exp_id: str | None = None) -> list[TrialRecord]:
    """All trials of the experiment that the running NNI manager on `port` serves (ReportError if none answers
    there, or it serves another experiment than `exp_id`), through `nni.experiment`."""
    try:
        exp = _connect(port)
        if exp_id is not None and exp.id != exp_id:
            raise ReportError(f"port {port} serves experiment {exp.id}, not {exp_id}")
        with _quiet_nni():
            jobs = exp.list_trial_jobs()
    # requests' errors are OSErrors, its JSON errors ValueErrors; a reply of another shape, Key/Type/AttributeError.
    except (OSError, ValueError, KeyError, TypeError, AttributeError, psutil.Error) as err:
        raise ReportError(f"no NNI manager answers on port {port} ({type(err).__name__}: {err})") from None
    # A job's last final result and parameters, as load_experiment keeps the last of each from the database.
    return [_trial_record(exp.id, j.trialJobId, j.status, j.finalMetricData[-1].data if j.finalMetricData else None,
                         j.hyperParameters[-1].parameters if j.hyperParameters else None, j.logPath or None)
            for j in sorted(jobs, key=lambda j: j.trialJobId)]


def experiment_config(exp_id: str, registry_path: Path | None = None) -> dict[str, Any]:
    """The experiment's config as NNI stored it (its database's ExperimentProfile), {} when it cannot be read."""
    try:
        con = sqlite3.connect(f"file:{_database(exp_id, registry_path)}?mode=ro", uri=True)
        try:
            row = con.execute("SELECT params FROM ExperimentProfile ORDER BY revision DESC LIMIT 1").fetchone()
        finally:
            con.close()
        return json.loads(row[0]) if row else {}
    except (ReportError, sqlite3.Error, ValueError, TypeError):
        return {}


def tuner_objectives(config: dict[str, Any]) -> dict[str, str] | None:
    """The objectives a multi-objective tuner was configured with (classArgs.objectives), None for other tuners."""
    tuner = config.get("tuner") or {}
    objectives = (tuner.get("classArgs") or {}).get("objectives")
    return dict(objectives) if isinstance(objectives, dict) and objectives else None


def load_export(path: Path) -> list[TrialRecord]:
    """Trials from `nnictl experiment export --type json` (only trials with a final result are exported)."""
    if not path.exists():
        raise ReportError(f"export file {path} does not exist")
    try:
        rows = json.loads(path.read_text())
        # A value that is not a dict (a plain number: another kind of experiment) is named, not summarised.
        return [_trial_record(path.stem, r["trialJobId"], "SUCCEEDED",
                              _parse_metric(json.dumps(r["value"])) if isinstance(r["value"], str) else r["value"],
                              r.get("parameter"), None)
                for r in rows]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise ReportError(f"{path} is not an `nnictl experiment export --type json` file "
                          f"({type(err).__name__}: {err})") from None


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated when minimising x (cost) and maximising y (accuracy), by cost."""
    return sorted(non_dominated(points, ("minimize", "maximize")), key=lambda i: points[i][0])


def _mean_std(values: Iterable[float]) -> tuple[float, float]:
    values = list(values)
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _fmt_pct(mean: float, std: float = 0.0) -> str:
    return f"{100 * mean:.2f} ± {100 * std:.2f} %" if std else f"{100 * mean:.2f} %"


def _fmt(v: Any, spec: str, unit: str = "") -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec) + unit


def _fmt_pm(mean: float | None, std: float | None, spec: str, unit: str = "", scale: float = 1.0) -> str:
    """`mean ± std unit` over seeds (the std only where there are several), `–` when not measured."""
    if mean is None:
        return "–"
    spread = f" ± {format(scale * std, spec.lstrip('+'))}" if std else ""
    return f"{format(scale * mean, spec)}{spread}{unit}"


def _where(lat: Latency | None) -> str | None:
    """What a latency was measured with, e.g. `onnxruntime int8, cpu, 1 thread`."""
    if lat is None or "?" in (lat.runtime, lat.device):  # recorded before latencies said where
        return None
    threads = f", {lat.threads} thread{'s' if lat.threads != 1 else ''}" if lat.threads else ""
    return f"{lat.runtime}, {lat.device}{threads}"


def portability_label(result: dict[str, Any]) -> str:
    """Whether the int8 file a trial shipped is right on an AVX2-only x86 CPU (common/portability.py): `yes` or
    `**no**` as the emulated check found, `7-bit, unchecked` (exact by construction), `**8-bit, unchecked**`
    (saturates there unless checked), `–` for a trial without an int8 file."""
    scheme = result.get("int8_scheme_used")
    if scheme is None:
        return "–"
    checked = result.get("portable_avx2")
    if checked is not None:
        return "yes" if checked else "**no**"
    return "7-bit, unchecked" if scheme == "reduced" else "**8-bit, unchecked**"


def configuration(result: dict[str, Any]) -> tuple:
    """What a trial ran, everything but its seed: trials of one configuration are repeats over seeds. The int8
    grid is part of it: a 7-bit and a full-grid file are different models, never two seeds of one."""
    return (result.get("trial"), result.get("profile"), result.get("dataset"), describe(result),
            result.get("int8_scheme_used"))


def _over_seeds(group: Sequence[dict[str, Any]], value: Callable[[dict[str, Any]], float | None]
                ) -> tuple[float | None, float | None]:
    values = [v for r in group if (v := value(r)) is not None]
    return _mean_std(values) if values else (None, None)


def summary_rows(records: Sequence[TrialRecord]) -> list[dict[str, Any]]:
    """The seed-style table: the dense baseline, then the best configuration (by mean `default` over its seeds,
    ties by common.record.ranking) of each stage, its accuracy, Δ and speed-ups as mean and std over the seeds
    (`seeds`: n; Δ and speed-ups are paired: each seed's model against the same seed's dense model).

    Numbers (fractions, like the trials' own keys; None where a value does not apply) plus what each size and
    latency is (`size_kind`, `latency_on`): report.md formats them, report.json keeps them for scripts.
    `accuracy_std` is over the dense accuracies the trials measured (one per seed for baseline trials).
    """
    ok = [{**upgrade(r.result), "trial_id": r.trial_id} for r in records if r.ok]
    if not ok:
        listing = f"; its {len(records)} trial(s):\n{failure_listing(records)}" if records else ""
        raise ReportError(f"no trial has a result of this suite yet: nothing to report{listing}")
    rows: list[dict[str, Any]] = []
    # The dense baseline as every trial measured it beside its own model (same process, same load).
    baselines = [read(r) for r in ok if r.get("trial") == "baseline"]
    beside = [read(r, "dense") for r in ok if r.get("trial") != "baseline"]
    dense_acc = [m.test_acc for m in baselines + beside if m.test_acc is not None]
    if dense_acc:
        # Size and latency from one measurement: a baseline trial's if there is one (eager torch, the session's
        # device), else the first trial that timed the dense model beside its own.
        ref = next((m for m in baselines + beside if m.latency is not None), Measurement())
        sized = next((m for m in baselines + beside if m.size_kind == "state_dict"), Measurement())
        mean, std = _mean_std(dense_acc)
        rows.append({
            "model": "dense ResNet-18 (baseline)", "accuracy": mean, "accuracy_std": std, "delta": None,
            "size_mb": None if sized.size_bytes is None else sized.size_bytes / 1e6,
            "size_kind": sized.size_kind, "size_ratio": 1.0,
            "latency_ms_b1": ref.latency.ms.get(1) if ref.latency else None,
            "latency_ms_b64": ref.latency.ms.get(64) if ref.latency else None, "latency_on": _where(ref.latency),
            "speedup_b1": 1.0, "speedup_b64": 1.0, "trials": len(dense_acc), "portable_avx2": "–",
            "seeds": len({r.get("seed") for r in ok}),
        })
    for kind, label in STAGES:
        stage = [r for r in ok if r.get("trial") == kind]
        if not stage:
            continue
        groups: dict[tuple, list[dict[str, Any]]] = {}
        for r in sorted(stage, key=lambda r: ranking(r, r["trial_id"])):
            group = groups.setdefault(configuration(r), [])
            if all(other.get("seed") != r.get("seed") for other in group):  # a rerun of a seed is not a new seed
                group.append(r)
        group = min(groups.values(), key=lambda g: (-statistics.fmean(r["default"] for r in g),
                                                    min(ranking(r, r["trial_id"]) for r in g)))
        best = min(group, key=lambda r: ranking(r, r["trial_id"]))  # sizes and latencies: one measurement
        m = read(best)
        acc, acc_std = _over_seeds(group, lambda r: read(r).test_acc)
        delta, delta_std = _over_seeds(group, lambda r: read_comparison(r)["delta_test_acc"])
        s1, s1_std = _over_seeds(group, lambda r: read_comparison(r)["speedup_b1"])
        s64, s64_std = _over_seeds(group, lambda r: read_comparison(r)["speedup_b64"])
        vs = read_comparison(best)
        rows.append({
            "model": f"{label}: {describe(best)}", "accuracy": acc, "accuracy_std": acc_std,
            "delta": delta, "delta_std": delta_std, "seeds": len(group),
            "speedup_b1_std": s1_std, "speedup_b64_std": s64_std,
            "size_mb": None if m.size_bytes is None else m.size_bytes / 1e6, "size_kind": m.size_kind,
            "size_ratio": vs["size_ratio"],
            "latency_ms_b1": m.latency.ms.get(1) if m.latency else None,
            "latency_ms_b64": m.latency.ms.get(64) if m.latency else None, "latency_on": _where(m.latency),
            "speedup_b1": s1, "speedup_b64": s64, "trials": len(stage),
            "portable_avx2": portability_label(best),
        })
    return rows


# The configurations a user compares first (the README's table): label, trial kind, the values that select them
# (a key the result lacks counts as its LABEL_DEFAULTS value; uniform sparsity and bits, never per-stage). Labels
# are ResNet-18's; each model's rows select its own trials (model_of) and pipeline rows its own arch_key, which
# excludes pipelines on a NAS architecture (`--arch`): "arch_key": None stands for the model record's key.
_FPGM50 = {"pruner": "fpgm", "sparsity": 0.5, "stage_sparsity": None}
HEADLINE: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("dense ResNet-18", "baseline", {}),
    ("FPGM 50 %, one-shot", "prune", {**_FPGM50, "prune_schedule": "oneshot", "distill_weight": 0.0}),
    ("FPGM 50 %, gradual", "prune", {**_FPGM50, "prune_schedule": "gradual", "distill_weight": 0.0}),
    ("FPGM 50 %, distilled", "prune", {**_FPGM50, "prune_schedule": "oneshot", "distill_weight": 0.5}),
    ("L1 50 %, one-shot", "prune", {"pruner": "l1", "sparsity": 0.5, "stage_sparsity": None,
                                    "prune_schedule": "oneshot", "distill_weight": 0.0}),
    ("QAT 8-bit from dense", "quant", {"algorithm": "qat", "bits": 8, "start": "dense", "stage_bits": None}),
    ("LSQ 4-bit from FPGM 50 %", "quant", {"algorithm": "lsq", "bits": 4, "start": "pruned", "stage_bits": None}),
    ("pipeline FPGM 50 % → QAT 8-bit", "pipeline", {**_FPGM50, "algorithm": "qat", "bits": 8, "arch_key": None,
                                                     "stage_bits": None, "distill_weight": 0.0}),
    ("pipeline, distilled", "pipeline", {**_FPGM50, "algorithm": "qat", "bits": 8, "arch_key": None,
                                         "stage_bits": None, "distill_weight": 0.5}),
)


def _selected(result: dict[str, Any], kind: str, values: Mapping[str, Any], model: str) -> bool:
    return (result.get("trial") == kind and model_of(result) == model
            and all(result.get(k, LABEL_DEFAULTS.get(k)) == v for k, v in values.items()))


def model_of(result: Mapping[str, Any]) -> str:
    """The `--model` a trial compressed; results from before the model registry name none: the default."""
    from common.models import DEFAULT_MODEL  # common.models imports torch: only when a report asks

    return result.get("model") or DEFAULT_MODEL


def _models(results: Iterable[Mapping[str, Any]]) -> list[tuple[str, str, str | None]]:
    """(name, label, key) of each model the results name: the registry's first, in its order, then users' own."""
    from common.models import MODELS

    names = {model_of(r) for r in results}
    return [*((m.name, m.label, m.key) for m in MODELS.values() if m.name in names),
            *((name, name, None) for name in sorted(names - set(MODELS)))]


def model_label(model: str) -> str:
    """How reports name `--model model`: its registry label (ResNet-18, MobileNetV2), else what the trial named."""
    from common.models import MODELS

    return MODELS[model].label if model in MODELS else model


def _headline_label(label: str, model: str, name: str) -> str:
    """The default model's (ResNet-18's) rows keep their labels; another model's say which (`dense MobileNetV2`)."""
    from common.models import DEFAULT_MODEL

    if model == DEFAULT_MODEL:
        return label
    return f"dense {name}" if label == HEADLINE[0][0] else f"{name}: {label}"


def headline_rows(records: Sequence[TrialRecord]) -> list[dict[str, Any]]:
    """One row per HEADLINE configuration that was recorded: test accuracy, paired Δ and speed-ups as mean and
    std over its seeds (n), the size ratio and whether its int8 file is right on AVX2-only x86. Where one label
    matches several configurations (e.g. two int8 grids), the one recorded on the most seeds is shown."""
    ok = [upgrade(r.result) for r in records if r.ok]
    rows = []
    for (label, kind, values), (model, name, key) in ((h, m) for m in _models(ok) for h in HEADLINE):
        if "arch_key" in values:  # the model's own network (a user's factory: its key is whatever it ran)
            values = {**values, "arch_key": key} if key else {k: v for k, v in values.items() if k != "arch_key"}
        groups: dict[tuple, dict[Any, dict[str, Any]]] = {}
        for r in sorted(ok, key=lambda r: ranking(r, "")):
            if _selected(r, kind, values, model):
                groups.setdefault(configuration(r), {}).setdefault(r.get("seed"), r)  # a rerun is not a new seed
        if not groups:
            continue
        group = list(max(groups.values(), key=len).values())
        acc = _over_seeds(group, lambda r: read(r).test_acc)
        delta = _over_seeds(group, lambda r: read_comparison(r)["delta_test_acc"]) if kind != "baseline" else None
        speed = [(1.0, 0.0) if kind == "baseline" else
                 _over_seeds(group, lambda r, b=b: read_comparison(r)[f"speedup_b{b}"]) for b in (1, 64)]
        rows.append({"model": _headline_label(label, model, name), "seeds": len(group),
                     "accuracy": acc[0], "accuracy_std": acc[1],
                     "delta": delta and delta[0], "delta_std": delta and delta[1],
                     "size_ratio": 1.0 if kind == "baseline" else read_comparison(group[0])["size_ratio"],
                     "speedup_b1": speed[0][0], "speedup_b1_std": speed[0][1],
                     "speedup_b64": speed[1][0], "speedup_b64_std": speed[1][1],
                     "portable_avx2": portability_label(group[0]), "cpu": cpu_label(group[0]),
                     "seed_cpus": {str(r.get("seed")): cpu_label(r) for r in group}})
    return rows


def cpu_label(result: Mapping[str, Any]) -> str:
    """The CPU a trial measured on, short: its model and the widest int8 instructions its ISA has (the report's
    header names the whole ISA; older records name no CPU)."""
    if "cpu_model" not in result:
        return "?"
    isa = result.get("cpu_isa", "").split("+")
    widest = next((f for f in ("amx_int8", "avx512_vnni", "avx_vnni", "avx512f", "avx2") if f in isa), "?")
    return f"{result['cpu_model'].replace('(R)', '')} [{widest}]"


def headline_markdown(rows: Sequence[Mapping[str, Any]],
                      speed: Mapping[str, tuple[float, float]] | None = None) -> list[str]:
    """The headline rows as a markdown table (mean ± std over n seeds; n = 1 is one seed, no spread), each seed's
    CPU named. `speed`: {row: (b1, b64)} speed-ups from one side-by-side run on one CPU (common.cli.bench
    headline), shown instead of the trials' own ratios (each against its dense model in eager torch, on the CPU of
    its trial: comparable only within one CPU); a row the run did not time shows `–`."""
    lines = ["| configuration | n (seeds) | test accuracy | Δ accuracy (paired) | size ratio | speed-up b1 "
             "| speed-up b64 | int8 right on AVX2-only x86 | accuracy measured on (seed: CPU) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if speed is None:
            b1 = _fmt_pm(r["speedup_b1"], r["speedup_b1_std"], ".2f", "×")
            b64 = _fmt_pm(r["speedup_b64"], r["speedup_b64_std"], ".2f", "×")
        else:
            b1, b64 = (f"{v:.2f}×" for v in speed[r["model"]]) if r["model"] in speed else ("–", "–")
        seeds = r.get("seed_cpus") or {"?": r.get("cpu", "?")}
        lines.append(
            f"| {r['model']} | {r['seeds']} | {_fmt_pct(r['accuracy'], r['accuracy_std'] or 0.0)} "
            f"| {_fmt_pm(r['delta'], r['delta_std'], '+.2f', ' pt', 100)} | {_fmt(r['size_ratio'], '.3f')} "
            f"| {b1} | {b64} | {r['portable_avx2']} | {'; '.join(f'{k}: {v}' for k, v in sorted(seeds.items()))} |")
    return lines


# The steps of the combined pipeline: (label, the model whose accuracy and params it shows, whose latency it
# shows, whose file size it shows). `arch` is the trained architecture before pruning, "" the deployed model.
# Sizes are of the deployable file (fp32 or int8 ONNX), so the ratios compare like with like.
PIPELINE_STEPS: tuple[tuple[str, str, str | None, str | None], ...] = (
    ("dense {model} (baseline), fp32 torch", "dense", "dense", "dense_ort"),
    ("architecture (trained), fp32 torch", "arch", "arch", "arch_ort"),
    ("pruned + fine-tuned, fp32 torch", "pruned", "pruned", "pruned_ort"),
    ("pruned, fp32 ONNX Runtime", "pruned", "pruned_ort", "pruned_ort"),
    ("quantized (NNI simulation)", "sim", None, None),
    ("deployed int8", "", "", ""),
)


def pipeline_steps(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per stage of a pipeline trial: accuracy, size, latency and speed-up against the baseline."""
    result = upgrade(result)
    dense, dense_file = read(result, "dense"), read(result, "dense_ort")
    rows = []
    for label, model, timed, file in PIPELINE_STEPS:
        acc = read(result, model)
        lat = read(result, timed).latency if timed is not None else None
        size = read(result, file).size_bytes if file is not None else None
        where = _where(lat) if model == "" else None  # the deployed model's runtime, as the trial measured it
        label = label.format(model=model_label(model_of(result)))
        rows.append({
            "step": f"{label}, {where}" if where else label,
            "val_acc": acc.val_acc, "test_acc": acc.test_acc, "params": acc.params,
            "size_mb": None if size is None else size / 1e6,
            "size_ratio": size / dense_file.size_bytes if size else None,
            "latency_ms_b1": lat.ms.get(1) if lat else None, "latency_ms_b64": lat.ms.get(64) if lat else None,
            "speedup_b1": dense.latency.ms[1] / lat.ms[1] if lat else None,
            "speedup_b64": dense.latency.ms[64] / lat.ms[64] if lat else None,
        })
    return rows


def _steps_markdown(experiment: str, result: dict[str, Any]) -> list[str]:
    lines = ["", f"## What each step cost: {experiment}'s best trial (arch {result.get('arch_key')}, "
                 f"{describe(result)})",
             "", "Measured in one trial process; latencies interleaved at one thread count.", "",
             "| step | val acc | test acc | params | size MB | size ratio | latency b1 ms | latency b64 ms "
             "| speed-up b1 | speed-up b64 |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in pipeline_steps(result):
        lines.append(
            f"| {r['step']} | {_fmt(r['val_acc'], '.4f')} | {_fmt(r['test_acc'], '.4f')} "
            f"| {_fmt(r['params'], ',')} | {_fmt(r['size_mb'], '.2f')} | {_fmt(r['size_ratio'], '.3f')} "
            f"| {_fmt(r['latency_ms_b1'], '.2f')} | {_fmt(r['latency_ms_b64'], '.1f')} "
            f"| {_fmt(r['speedup_b1'], '.2f', '×')} | {_fmt(r['speedup_b64'], '.2f', '×')} |")
    if result.get("int8_model"):  # what to ship: the deployed model the trial kept in its NNI output directory
        lines += ["", f"Deployed model: `{result['int8_model']}`"]
    return lines


# Parameters worth naming in a row label, in this order; the rest stay in the full trial table.
LABEL_KEYS = ("pruner", "sparsity", "stage_sparsity", "prune_schedule", "prune_steps", "distill_weight", "algorithm",
              "bits", "stage_bits", "start", "stages", "blocks", "width", "activation", "kernel_size", "arch_key")
# Named only when they differ from these defaults (most trials use them).
LABEL_DEFAULTS = {"prune_schedule": "oneshot", "prune_steps": 1, "distill_weight": 0.0}


# A per-stage value replaces its uniform one (which the result still echoes, unused).
REPLACED_BY = {"sparsity": "stage_sparsity", "bits": "stage_bits"}


def describe(result: dict[str, Any]) -> str:
    shown = [k for k in LABEL_KEYS if k in result and result[k] is not None
             and result[k] != LABEL_DEFAULTS.get(k, object()) and result.get(REPLACED_BY.get(k, "")) is None]
    return ", ".join(f"{k}={result[k]}" for k in shown) or result.get("trial", "?")


def machines(records: Sequence[TrialRecord]) -> list[dict[str, Any]]:
    """The CPUs the trials measured on (as each result names it), with the int8 schemes used there."""
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for r in records:
        res = r.result or {}
        if "cpu_model" not in res:
            continue
        entry = seen.setdefault((res["cpu_model"], res.get("cpu_isa", "?")),
                                {"cpu_model": res["cpu_model"], "cpu_isa": res.get("cpu_isa", "?"),
                                 "int8_schemes": [], "trials": 0})
        entry["trials"] += 1
        scheme = res.get("int8_scheme_used")
        if scheme and scheme not in entry["int8_schemes"]:
            entry["int8_schemes"].append(scheme)
    return list(seen.values())


def front_results(records: Sequence[TrialRecord], experiment: str) -> list[dict[str, Any]]:
    """The final results of one experiment's successful trials, each with its `trial_id`."""
    return [{**upgrade(r.result), "trial_id": r.trial_id} for r in records if r.ok and r.experiment == experiment]


def fronts(records: Sequence[TrialRecord], objectives: Mapping[str, Mapping[str, str]]) -> dict[str, Front]:
    """The front of each experiment that names its objectives (a multi-objective tuner's classArgs)."""
    results = {e: front_results(records, e) for e in objectives}
    return {e: front(results[e], obj) for e, obj in objectives.items() if results[e]}


def _front_markdown(experiment: str, f: Front, plot_name: str | None) -> list[str]:
    ref = ", ".join(f"{k} {v:g}" for k, v in zip(f.objectives, f.reference, strict=True))
    lines = ["", f"## Front of {experiment}: {', '.join(f'{k} ({d})' for k, d in f.objectives.items())}", "",
             f"{len(f.members)} non-dominated of {f.candidates} trials (selected on validation accuracy; test "
             f"accuracy beside it). Hypervolume {f.hypervolume:.4f} against the reference point ({ref}): accuracy "
             "0 and the dense model's own costs.", "",
             "| trial | parameters | val acc | test acc | " + " | ".join(k for k in f.objectives if k != "val_acc")
             + " | int8 right on AVX2-only x86 |",
             "|---|---|---|---|" + "---|" * (len(f.objectives) - ("val_acc" in f.objectives)) + "---|"]
    for m in f.members:
        costs = " | ".join(_fmt(m.get(k), ".3f") for k in f.objectives if k != "val_acc")
        lines.append(f"| {m.get('trial_id')} | {describe(m)} | {_fmt(m.get('val_acc'), '.4f')} "
                     f"| {_fmt(m.get('test_acc'), '.4f')} | {costs} | {portability_label(m)} |")
    if plot_name:
        lines += ["", f"![front of {experiment}]({plot_name})"]
    return lines


def plot_front(experiment: str, results: Sequence[dict[str, Any]], f: Front, out_dir: Path) -> Path | None:
    """Validation accuracy against each cost objective: every trial, the front's members marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    costs = [k for k, d in f.objectives.items() if d == "minimize"]
    if "val_acc" not in f.objectives or not costs:
        return None
    members = {m.get("trial_id") for m in f.members}
    fig, axes = plt.subplots(1, len(costs), figsize=(5.2 * len(costs), 4.2), squeeze=False)
    for ax, cost in zip(axes[0], costs, strict=True):
        pts = [(r[cost], r["val_acc"], r.get("trial_id") in members) for r in results
               if isinstance(r.get(cost), (int, float)) and isinstance(r.get("val_acc"), (int, float))]
        ax.scatter([x for x, _, m in pts if not m], [y for _, y, m in pts if not m], c="0.6", label="trial")
        ax.scatter([x for x, _, m in pts if m], [y for _, y, m in pts if m], c="r", label="non-dominated")
        ax.set_xlabel(f"{cost} (dense = 1)")
        ax.set_ylabel("validation accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{experiment}: hypervolume {f.hypervolume:.4f}")
    fig.tight_layout()
    path = out_dir / f"front_{experiment}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def markdown(records: Sequence[TrialRecord], plots: Sequence[Path],
             experiment_fronts: Mapping[str, Front] | None = None) -> str:
    rows = summary_rows(records)
    experiments = sorted({r.experiment for r in records})
    ok = [r for r in records if r.ok]
    profiles = sorted({str(r.result.get("profile")) for r in ok})
    lines = [
        "# Compression report",
        "",
        f"Experiments: {', '.join(experiments)}; {len(ok)} of {len(records)} trials with a final result; "
        f"profile: {', '.join(profiles)}; dataset: {', '.join(sorted({str(r.result.get('dataset')) for r in ok}))}.",
    ]
    cpus = machines(records)
    if cpus:
        named = [f"{c['cpu_model']} [{c['cpu_isa']}], int8 scheme {'/'.join(c['int8_schemes']) or '–'} "
                 f"({c['trials']} trials)" for c in cpus]
        lines += ["", "CPU: " + "; ".join(named) + "."]
        if len(cpus) > 1:
            lines += ["", f"**These trials ran on {len(cpus)} different CPUs: compare latencies and speed-ups only "
                          "within one CPU.**"]
    contended = [r.trial_id for r in ok if r.result.get("latency_contended")]
    if contended:
        lines += ["", f"**{len(contended)} trial(s) timed latencies on a busy machine (`latency_contended`: "
                      f"{', '.join(contended)}): their milliseconds are inflated; their speed-ups and ratios to the "
                      "dense model, timed alike in the same process, are not.**"]
    if "smoke" in profiles:
        lines += ["", "**Smoke profile: synthetic data and minutes of CPU training. These numbers show that the "
                      "pipeline works; they say nothing about CIFAR-10 accuracy.**"]
    lines += [
        "",
        "Accuracy is top-1 on the test split; each trial's tuner objective was validation accuracy. Δ, size ratio "
        "and speed-up compare each model with the dense model measured in the same trial process (an int8 model's "
        "size with the dense fp32 ONNX file, its speed-up with the dense model in eager torch).",
        "",
        "| model | n (seeds) | accuracy | Δ accuracy | size MB | size of | size ratio | latency b1 ms | latency b64 ms "
        "| latency measured with | speed-up b1 | speed-up b64 | trials | int8 right on AVX2-only x86 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    settings = {r["latency_on"].split(", ", 1)[1] for r in rows if r["latency_on"]}
    if len(settings) > 1:
        lines.insert(-3, f"Latencies in this table were measured in {len(settings)} settings "
                         f"({'; '.join(sorted(settings))}): compare a latency only with those measured alike; "
                         "each speed-up is against the dense model timed the same way in the same trial.\n")
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['seeds']} | {_fmt_pct(r['accuracy'], r['accuracy_std'] or 0.0)} "
            f"| {_fmt_pm(r['delta'], r.get('delta_std'), '+.2f', ' pt', 100)} | {_fmt(r['size_mb'], '.2f')} "
            f"| {SIZE_LABELS.get(r['size_kind'], '–')} | {_fmt(r['size_ratio'], '.3f')} "
            f"| {_fmt(r['latency_ms_b1'], '.2f')} | {_fmt(r['latency_ms_b64'], '.1f')} | {r['latency_on'] or '–'} "
            f"| {_fmt_pm(r['speedup_b1'], r.get('speedup_b1_std'), '.2f', '×')} "
            f"| {_fmt_pm(r['speedup_b64'], r.get('speedup_b64_std'), '.2f', '×')} | {r['trials']} "
            f"| {r['portable_avx2']} |"
        )
    headline = headline_rows(records)
    if headline:
        lines += ["", "## Headline configurations", "",
                  "Mean ± std over seeds (n); Δ and speed-ups paired with each seed's own dense model (speed-ups "
                  "as each trial measured them: against its dense model in eager torch, on its CPU).", "",
                  *headline_markdown(headline)]
    # One breakdown per pipeline experiment: each may start from another architecture (ResNet-18, a NAS export).
    for experiment in experiments:
        pipeline = [r for r in ok if r.experiment == experiment and r.result.get("trial") == "pipeline"]
        if pipeline:
            best = min(pipeline, key=lambda r: ranking(r.result, r.trial_id))
            lines += _steps_markdown(experiment, best.result)
    for experiment, f in (experiment_fronts or {}).items():
        name = f"front_{experiment}.png"
        lines += _front_markdown(experiment, f, name if any(p.name == name for p in plots) else None)
    lines += ["", "## All trials", "",
              "| experiment | trial | status | stage | parameters | val acc | test acc | Δ test acc | size MB | b1 ms "
              "| budget | int8 right on AVX2-only x86 |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        res = r.result or {}
        budget = {True: "ok", False: "**over**"}.get(res.get("within_budget"), "–")
        delta = read_comparison(res)["delta_test_acc"] if res else None
        lines.append(
            f"| {r.experiment} | {r.trial_id} | {r.status} | {res.get('trial', '–')} "
            f"| {describe(res) if res else '–'} | {_fmt(res.get('val_acc'), '.4f')} "
            f"| {_fmt(res.get('test_acc'), '.4f')} "
            f"| {_fmt(None if delta is None else 100 * delta, '+.2f', ' pt')} | {_fmt(res.get('size_mb'), '.2f')} "
            f"| {_fmt(res.get('latency_ms_b1'), '.2f')} | {budget} | {portability_label(res)} |"
        )
    if plots:
        lines += ["", "## Trade-offs", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    return "\n".join(lines) + "\n"


def plot(records: Sequence[TrialRecord], out_dir: Path) -> list[Path]:
    """Accuracy vs latency and vs size (Pareto front marked), and accuracy vs sparsity per pruner."""
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on servers
    import matplotlib.pyplot as plt

    ok = [upgrade(r.result) for r in records if r.ok and "accuracy" in r.result]
    paths = []

    def latency_b1(m: Measurement) -> float | None:
        return m.latency.ms.get(1) if m.latency else None

    def size_mb(m: Measurement) -> float | None:
        return None if m.size_bytes is None else m.size_bytes / 1e6

    for cost, xlabel, name in ((latency_b1, "latency, batch 1 (ms; each trial's deployed runtime)",
                                "accuracy_vs_latency"), (size_mb, "size (MB)", "accuracy_vs_size")):
        measured = [(read(r), read(r, "dense"), r) for r in ok]
        pts = [(cost(m), m.test_acc, r.get("trial", "?")) for m, _, r in measured if cost(m) is not None]
        over = [(cost(m), m.test_acc) for m, _, r in measured
                if cost(m) is not None and r.get("within_budget") is False]
        dense = [(cost(d), d.test_acc) for _, d, _ in measured if cost(d) is not None and d.test_acc is not None]
        if not pts:
            continue
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        for kind in sorted({p[2] for p in pts}):
            xs, ys = zip(*[(x, y) for x, y, k in pts if k == kind], strict=True)
            ax.scatter(xs, ys, label=kind, alpha=0.8)
        if over:
            ax.scatter(*zip(*over, strict=True), marker="o", s=110, facecolors="none", edgecolors="k", lw=0.8,
                       label="over budget")
        if dense:
            ax.scatter(*zip(*dense, strict=True), marker="*", s=140, c="k", label="dense (same trial)")
        front = pareto_front([(x, y) for x, y, _ in pts])
        ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], "r--", lw=1, label="Pareto front")
        ax.set_xscale("log")  # costs span orders of magnitude (a NAS net to the dense ResNet-18)
        ax.set_xlabel(xlabel + ", log scale")
        ax.set_ylabel("test accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        paths.append(out_dir / f"{name}.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    pruned = [r for r in ok if r.get("trial") == "prune" and "sparsity" in r]
    if pruned:
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        for pruner in sorted({r["pruner"] for r in pruned}):
            pts = sorted((r["sparsity"], r["accuracy"]) for r in pruned if r["pruner"] == pruner)
            ax.plot(*zip(*pts, strict=True), "o-", label=pruner)
        ax.set_xlabel("sparsity (fraction of filters removed)")
        ax.set_ylabel("test accuracy after fine-tune")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        paths.append(out_dir / "accuracy_vs_sparsity.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


# Echoed parameters that only name folders of the machine the trial ran on: a committed report leaves them out.
MACHINE_PATH_KEYS = ("data_dir", "cache_dir", "keep_model")


def without_machine_paths(result: dict[str, Any] | None) -> dict[str, Any] | None:
    """A result as a report writes it: no folders of the machine it ran on; the kept int8 model relative to
    the NNI experiments folder (`<experiment>/environments/.../model.int8.onnx`)."""
    if result is None:
        return None
    out = {k: v for k, v in result.items() if k not in MACHINE_PATH_KEYS}
    if isinstance(out.get("arch"), str) and out["arch"].startswith("/"):  # --arch best_arch.json: its name
        out["arch"] = Path(out["arch"]).name
    model = out.get("int8_model")
    if isinstance(model, str) and model.startswith("/"):
        out["int8_model"] = model.split("nni-experiments/", 1)[1] if "nni-experiments/" in model else Path(model).name
    return out


def load_report(path: Path) -> list[TrialRecord]:
    """The trials of a report.json that write_report wrote: a committed report rebuilt with today's code."""
    if not path.exists():
        raise ReportError(f"report file {path} does not exist")
    try:
        trials = json.loads(path.read_text())["trials"]
        return [TrialRecord(t["experiment"], t["trial_id"], t["status"], t["result"]) for t in trials]
    except (ValueError, KeyError, TypeError) as err:
        raise ReportError(f"{path} is not a report.json written by this report ({type(err).__name__}: {err})") from err


def write_report(records: Sequence[TrialRecord], out_dir: Path,
                 objectives: Mapping[str, Mapping[str, str]] | None = None) -> Path:
    """report.md, report.json and the plots; `objectives`: per experiment, the objectives whose front to show."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ReportError(f"cannot write the report to {out_dir}: {err.strerror}") from err
    records = [TrialRecord(r.experiment, r.trial_id, r.status, without_machine_paths(r.result), r.parameters,
                           r.last_log_line) for r in records]
    found = fronts(records, objectives or {})
    plots = plot(records, out_dir)
    plots += [p for e, f in found.items() if (p := plot_front(e, front_results(records, e), f, out_dir))]
    path = out_dir / "report.md"
    try:
        path.write_text(markdown(records, plots, found))
    except OSError as err:
        raise ReportError(f"cannot write {path}: {err.strerror}") from err
    # The same data for scripts: the summary rows and every trial's full final result.
    data = {"summary": summary_rows(records), "headline": headline_rows(records), "machines": machines(records),
            "fronts": {e: f.summary() for e, f in found.items()},
            "trials": [{"experiment": r.experiment, "trial_id": r.trial_id, "status": r.status, "result": r.result}
                       for r in records]}
    (out_dir / "report.json").write_text(json.dumps(data, indent=1, default=str) + "\n")
    return path

