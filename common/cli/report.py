"""Turn one or more NNI experiments into the seed report's comparison table and trade-off plots.

    python3 -m common.cli.report <experiment-id> [<id> ...] [--export export.json ...] --out results/report

Trials are read from each experiment's own database (`<logDir>/<id>/db/nni.sqlite`, found through
nnictl's registry `~/nni-experiments/.experiment`), so a finished *or* running experiment works
without starting its manager; `--export` also takes `nnictl experiment export --type json` files, and
`--from-report` a report.json written earlier (a committed report, rebuilt with this code:
`python3 -m common.cli.report --from-report results/smoke/report.json --out results/smoke`).
The report itself is built by common/report.py. An experiment run by the multi-objective tuner
(common/pareto_tuner.py) also gets its front: the non-dominated trials, their hypervolume and a plot.

    python3 -m common.cli.report pick <experiment-id> --max-latency-ratio-b1 0.3 --max-size-ratio 0.1
    python3 -m common.cli.report compare <uniform-id> <stagewise-id> --out results/pareto

`pick` prints the trial with the best validation accuracy within every budget (flags as the trials' budgets), its
parameters, measurements and kept int8 model, or says that none is within them and which comes closest.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common.front import SHOWN, pick
from common.objective import BUDGET_FLAGS, validate_budgets
from common.report import (
    ReportError,
    TrialRecord,
    describe,
    experiment_config,
    front_results,
    load_experiment,
    load_export,
    load_report,
    tuner_objectives,
    write_report,
)


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["pick"]:
        pick_main(argv[1:])
        return
    if argv[:1] == ["compare"]:  # the per-stage against the uniform search (issue #29)
        from common.cli.compare import main as compare_main

        compare_main(argv[1:])
        return
    parser = argparse.ArgumentParser(prog="python3 -m common.cli.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_sources(parser)
    parser.add_argument("--out", type=Path, default=Path("results/report"))
    args = parser.parse_args(argv)
    if not (args.experiments or args.export or args.from_report):
        parser.error("give at least one experiment id, --export or --from-report file")
    try:
        records = _records(args)
        objectives = {e: o for e in args.experiments if (o := tuner_objectives(experiment_config(e, args.registry)))}
        for f in args.from_report:  # a rebuilt report keeps the fronts it showed
            objectives |= {e: front["objectives"] for e, front in json.loads(f.read_text()).get("fronts", {}).items()}
        path = write_report(records, args.out, objectives)
    except ReportError as err:
        raise SystemExit(f"report: {err}") from None
    print(f"wrote {path} ({len(records)} trials)")


def _add_sources(parser: argparse.ArgumentParser) -> None:
    """Where the trials come from: the same flags for the report and for `pick`."""
    parser.add_argument("experiments", nargs="*", help="NNI experiment ids (running or finished)")
    parser.add_argument("--export", type=Path, action="append", default=[], help="nnictl export --type json file")
    parser.add_argument("--from-report", type=Path, action="append", default=[],
                        help="a report.json this command wrote: its trials")
    parser.add_argument("--exclude", action="append", default=[], metavar="EXPERIMENT_ID",
                        help="leave out this experiment's trials (e.g. one a re-recording supersedes)")
    parser.add_argument("--registry", type=Path, default=None,
                        help="nnictl registry: its .experiment file or its folder (default ~/nni-experiments)")


def _records(args: argparse.Namespace) -> list[TrialRecord]:
    records = [r for e in args.experiments for r in load_experiment(e, args.registry)]
    records += [r for f in args.export for r in load_export(f)]
    records += [r for f in args.from_report for r in load_report(f)]
    unknown = set(args.exclude) - {r.experiment for r in records}
    if unknown:
        raise ReportError(f"--exclude {', '.join(sorted(unknown))}: no such experiment among the trials read")
    return [r for r in records if r.experiment not in args.exclude]


def pick_main(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(prog="python3 -m common.cli.report pick",
                                     description="the best trial (validation accuracy) within every budget")
    _add_sources(parser)
    for dest, (metric, text) in BUDGET_FLAGS.items():
        parser.add_argument(f"--{dest.replace('_', '-')}", dest=dest, type=float, default=None,
                            help=f"{text} (metric `{metric}`)")
    args = parser.parse_args(argv)
    budgets = {metric: getattr(args, dest) for dest, (metric, _) in BUDGET_FLAGS.items()
               if getattr(args, dest) is not None}
    if not (args.experiments or args.export or args.from_report) or not budgets:
        parser.error("give an experiment id (or --export / --from-report) and at least one --max-* budget")
    try:
        validate_budgets(budgets)  # a NaN budget admits nothing, a negative one nothing either: say so now
        records = _records(args)
    except (ReportError, ValueError) as err:
        raise SystemExit(f"report pick: {err}") from None
    results = [res for e in sorted({r.experiment for r in records}) for res in front_results(records, e)]
    # A latency ratio is only comparable with ratios measured on the same CPU: rank each CPU's trials apart.
    by_cpu: dict[str, list[dict[str, Any]]] = {}
    for res in results:
        if all(res.get(k) is not None for k in budgets):  # the others cannot be picked on any CPU
            by_cpu.setdefault(_cpu(res) if any("latency" in k for k in budgets) else "", []).append(res)
    if len(by_cpu) > 1:
        print(f"latency ratios measured on {len(by_cpu)} CPUs: each CPU's trials are ranked apart, never against "
              "each other")
    found = [_pick_on(group, budgets, len(by_cpu) > 1) for group in (by_cpu or {"": results}).values()]
    if not any(found):
        raise SystemExit(1)


def _cpu(result: dict[str, Any]) -> str:
    return f"{result['cpu_model']} [{result.get('cpu_isa', '?')}]" if "cpu_model" in result else "an unnamed CPU"


def _pick_on(results: list[dict[str, Any]], budgets: dict[str, float], several: bool) -> bool:
    """Print the pick among `results` (one CPU's, where a budget is a latency), naming the CPU its ratios were
    measured on; whether one is within every budget. With one group, none reporting a budget is an error."""
    best, closest = pick(results, budgets)
    wanted = ", ".join(f"{k} <= {v:g}" for k, v in budgets.items())
    if best is not None:
        print(f"best within {wanted}: trial {best['trial_id']} (ratios measured on {_cpu(best)})")
        _show(best)
        return True
    if closest is None:
        message = f"none of {len(results)} trials reports {', '.join(budgets)}"
        if not several:
            raise SystemExit(f"report pick: {message}")
        print(f"on {_cpu(results[0])}: {message}")
        return False
    print(f"none of {len(results)} trials is within {wanted}; closest: trial {closest['trial_id']} "
          f"({', '.join(f'{k} {closest[k]:.3f}' for k in budgets)}, measured on {_cpu(closest)})")
    _show(closest)
    return False


def _show(result: dict[str, Any]) -> None:
    print(f"  parameters: {describe(result)}")
    for key in SHOWN:
        if result.get(key) is not None:
            value = result[key]
            print(f"  {key}: {value:.4f}" if isinstance(value, float) else f"  {key}: {value}")


if __name__ == "__main__":
    main()
