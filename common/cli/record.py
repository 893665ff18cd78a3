"""Record experiments one after the other on this CPU, as results/ are recorded: each config through
`nnictl create`, waited for until its trials end, then stopped, so no two experiments share the CPU (their
latencies would be contended) and a cached model built by one is there for the next. Each experiment's id is
appended to `--ids` as it ends, so a recording that dies after hours keeps what finished.

    python3 -m common.cli.record experiments/baseline/config.cpu.yml experiments/quant/config.cpu.yml \\
        --ids recording.txt
    python3 -m common.cli.record experiments/quant/config.cpu.yml --search-space headline.json \\
        --trial-args "--portability-check avx2"
    python3 -m common.cli.report $(cut -d' ' -f2 recording.txt) --out results/cpu

`--search-space` and `--trial-args` apply to every config given: run the command once per variation.

A seed unit is one seed's dense model and every headline configuration, in the order they build on each other
(baseline, pruning, quantization, pipeline), each config on its committed seeds search space with only that seed:

    python3 -m common.cli.record --seed-unit 1 --ids results/cpu/seed1/recording.txt

The comparison unit (issue #29) is the dense model (seed 0, loaded from the cache when it is there), then the uniform
and the per-stage search (experiments/pareto/config.uniform.search.yml, config.stagewise.search.yml); its confirmation
re-trains the points a comparison report picked at the `cpu` profile (experiments/pareto/config.confirm.cpu.yml):

    python3 -m common.cli.record --pareto-unit --ids results/pareto/recording.txt
    python3 -m common.cli.record --pareto-confirm results/pareto/report.json --ids results/pareto/confirm.txt
Start it in the background (`nohup ... &`); `nnictl stop <id>` ends the experiment running, and the recording
goes on with the next one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import yaml

from common.nni_compat import dispatcher_failure

ENDED = ("DONE", "STOPPED", "ERROR")
# No trial will start: the trial budget is spent (NO_MORE_TRIAL) or the tuner has none left (TUNER_NO_MORE_TRIAL,
# e.g. a grid smaller than maxTrialNumber, which NNI never flips to DONE).
NO_MORE = ("NO_MORE_TRIAL", "TUNER_NO_MORE_TRIAL")


def absolute_paths(cfg: dict, base: Path) -> dict:
    """`cfg` (a parsed experiment config from folder `base`) with its relative paths made absolute, as nnictl
    resolves them against the config's folder: a copy written elsewhere then starts the same experiment."""
    cfg = dict(cfg)
    cfg["searchSpaceFile"] = str((base / cfg["searchSpaceFile"]).resolve())
    cfg["trialCodeDirectory"] = str((base / cfg.get("trialCodeDirectory", ".")).resolve())
    for algo in ("tuner", "assessor", "advisor"):  # a custom algorithm's codeDirectory is relative too
        if isinstance(cfg.get(algo), dict) and "codeDirectory" in cfg[algo]:
            cfg[algo] = {**cfg[algo], "codeDirectory": str((base / cfg[algo]["codeDirectory"]).resolve())}
    return cfg


def prepared_config(config: Path, workdir: Path, search_space: Path | None = None, trial_args: str = "") -> Path:
    """`config` itself, or a copy in `workdir` with another search space and/or more trial flags."""
    if search_space is None and not trial_args:
        return config
    cfg = absolute_paths(yaml.safe_load(config.read_text()), config.parent)
    if search_space is not None:
        cfg["searchSpaceFile"] = str(search_space.resolve())
    cfg["trialCommand"] = " ".join([*cfg["trialCommand"].split(), *trial_args.split()])
    copy = workdir / f"{config.parent.name}-{config.name}"
    copy.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return copy


def manager_get(port: int, path: str):
    """GET `path` of the NNI manager's REST API on `port` (what nnictl's own status commands read)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/nni/{path}", timeout=10) as r:
        return json.loads(r.read())


class TunerDied(RuntimeError):
    """The experiment's tuner process (NNI's dispatcher) exited: no trial will start again, yet NNI says RUNNING."""


def wait_until_ended(port: int, poll_s: float = 10.0, settle_s: float = 60.0, timeout_s: float | None = None,
                     unanswered: int = 3, experiment_dir: Path | None = None) -> str:
    """The experiment's status once its trials have ended (DONE, STOPPED or ERROR). NNI reports NO_MORE_TRIAL
    while the last trials still run and flips it to DONE a moment after they end; a manager that never flips it
    (always so for TUNER_NO_MORE_TRIAL) returns its status after `settle_s` with nothing waiting or running. A
    manager busy enough to miss a query is asked again; the error of `unanswered` missed queries in a row is raised
    (it is gone). TimeoutError after `timeout_s`. With `experiment_dir` (the manager's logDir), TunerDied as soon as
    its dispatcher.log says the tuner exited (common.nni_compat.dispatcher_failure)."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    status, idle_since, missed = "UNKNOWN", None, 0
    while deadline is None or time.monotonic() < deadline:
        try:
            status = manager_get(port, "check-status")["status"]
            jobs = manager_get(port, "trial-jobs") if status in NO_MORE else []
        except OSError:  # URLError, a refused connection, a read timeout
            missed += 1
            if missed >= unanswered:
                raise
            time.sleep(poll_s)
            continue
        missed = 0
        if status in ENDED:
            return status
        why = dispatcher_failure(experiment_dir) if experiment_dir else None
        if why:
            raise TunerDied(f"experiment {Path(experiment_dir).name}: NNI's tuner process (dispatcher) exited "
                            f"({why}); no trial will start again, though NNI says {status}. "
                            f"See {Path(experiment_dir) / 'log' / 'dispatcher.log'}")
        if status in NO_MORE and all(j["status"] not in ("WAITING", "RUNNING") for j in jobs):
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since > settle_s:
                return status
        time.sleep(poll_s)
    raise TimeoutError(f"the experiment on port {port} is still {status} after {timeout_s:.0f}s")


def record(config: Path, port: int, poll_s: float = 10.0) -> tuple[str, str, dict[str, int]]:
    """`nnictl create` the config, wait for its trials, `nnictl stop` it; returns (experiment id, final status,
    trials per status). A tuner that died is status TUNER_DIED, said in one line."""
    nnictl = shutil.which("nnictl")
    if nnictl is None:
        raise SystemExit("nnictl is not on PATH: python3 -m pip install -r requirements.txt")
    created = subprocess.run([nnictl, "create", "--config", str(config), "--port", str(port)],
                             capture_output=True, text=True)
    if created.returncode != 0:
        raise SystemExit(f"nnictl create --config {config} failed:\n{created.stdout[-2000:]}{created.stderr[-2000:]}")
    experiment = manager_get(port, "experiment")  # from the manager on our port, not nnictl's coloured text
    exp_id, counts = experiment["id"], {}
    try:
        status = wait_until_ended(port, poll_s, experiment_dir=Path(experiment["logDir"]))
    except OSError:  # the manager stopped answering: stopped by hand, or it died
        status = "STOPPED"
    except TunerDied as err:
        print(f"{config}: {err}", file=sys.stderr, flush=True)
        status = "TUNER_DIED"
    with contextlib.suppress(OSError):
        counts = Counter(job["status"] for job in manager_get(port, "trial-jobs"))
    subprocess.run([nnictl, "stop", exp_id], capture_output=True)
    return exp_id, status, dict(counts)


# (config, the search space whose `seed` choice the unit narrows to one seed), relative to experiments/
SEED_UNIT = (("baseline/config.cpu.yml", "baseline/search_space.cpu.json"),
             ("pruning/config.seeds.cpu.yml", "pruning/search_space.seeds.cpu.json"),
             ("quant/config.seeds.cpu.yml", "quant/search_space.seeds.cpu.json"),
             ("pipeline/config.seeds.cpu.yml", "pipeline/search_space.seeds.cpu.json"))


def seed_unit(seed: int, experiments: Path, workdir: Path) -> list[tuple[Path, Path]]:
    """The seed unit's (config, search space) pairs, each space written to `workdir` with `seed` as its only seed."""
    runs = []
    for config, space in SEED_UNIT:
        spec = json.loads((experiments / space).read_text())
        spec["seed"] = {"_type": "choice", "_value": [seed]}
        narrowed = workdir / f"{Path(config).parent}-seed{seed}.json"
        narrowed.write_text(json.dumps(spec, indent=1))
        runs.append((experiments / config, narrowed))
    return runs


PARETO_UNIT = ("pareto/config.uniform.search.yml", "pareto/config.stagewise.search.yml")
PARETO_CONFIRM = "pareto/config.confirm.cpu.yml"


def pareto_runs(confirm: Path | None, experiments: Path, workdir: Path) -> list[tuple[Path, Path | None]]:
    """The comparison unit's (config, search space) pairs: the dense model of seed 0 first (cached: a load and its
    measurement), then both searches on their own spaces; with `confirm` (a comparison's report.json), the
    confirmation on a grid of the anchor and the points that report picked."""
    from common.compare import confirm_space

    if confirm is not None:
        try:
            picks = json.loads(confirm.read_text())["comparison"]["picks"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise SystemExit(f"--pareto-confirm {confirm}: not a comparison report.json "
                             f"(python3 -m common.cli.report compare): {type(err).__name__}: {err}") from None
        space = workdir / "pareto-confirm.json"
        space.write_text(json.dumps(confirm_space(picks), indent=1))
        return [(experiments / PARETO_CONFIRM, space)]
    dense = seed_unit(0, experiments, workdir)[0]
    return [dense, *((experiments / config, None) for config in PARETO_UNIT)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m common.cli.record", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("configs", nargs="*", type=Path, help="experiment configs, run in this order")
    parser.add_argument("--seed-unit", type=int, metavar="K",
                        help="record seed K's unit instead: its dense model and every headline configuration")
    parser.add_argument("--pareto-unit", action="store_true",
                        help="record the per-stage against uniform comparison instead (dense model, both searches)")
    parser.add_argument("--pareto-confirm", type=Path, metavar="REPORT",
                        help="re-train the points a comparison's report.json picked, at the cpu profile")
    parser.add_argument("--ids", type=Path, default=Path("recording.txt"),
                        help="appended as each experiment ends: '<config> <id> <status>' (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8080, help="the NNI manager's port (default: %(default)s)")
    parser.add_argument("--search-space", type=Path, help="run every config on this search space instead")
    parser.add_argument("--trial-args", default="", help="flags appended to every config's trialCommand")
    parser.add_argument("--poll", type=float, default=10.0, help="seconds between status queries")
    args = parser.parse_args(argv)
    units = (args.seed_unit is not None) + args.pareto_unit + (args.pareto_confirm is not None)
    if bool(args.configs) + units != 1:
        parser.error("give experiment configs or one unit (--seed-unit K, --pareto-unit, --pareto-confirm), not both")
    if units and args.search_space:
        parser.error("a unit runs its own search spaces; --search-space does not apply")
    for path in [*args.configs, *([args.search_space] if args.search_space else [])]:
        if not path.is_file():
            parser.error(f"{path}: no such file")
    failed = []
    with tempfile.TemporaryDirectory(prefix="record-") as tmp:
        experiments = Path(__file__).resolve().parents[2] / "experiments"
        runs = ([(config, args.search_space) for config in args.configs] if args.configs else
                seed_unit(args.seed_unit, experiments, Path(tmp)) if args.seed_unit is not None else
                pareto_runs(args.pareto_confirm, experiments, Path(tmp)))
        for config, space in runs:
            prepared = prepared_config(config, Path(tmp), space, args.trial_args)
            exp_id, status, counts = record(prepared, args.port, args.poll)
            with open(args.ids, "a") as f:
                f.write(f"{config} {exp_id} {status}\n")
            trials = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no trials"
            print(f"{config}: experiment {exp_id} {status} ({trials})", flush=True)
            if status == "TUNER_DIED" or not counts.get("SUCCEEDED"):
                failed.append(f"{config} ({exp_id}: {status}, {trials})")
    if failed:  # what finished is kept (--ids); the exit status says that something did not
        print(f"not recorded: {'; '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
