"""The NAS search space's files and the export of the best found architecture (common/nas.py).

    python3 -m common.cli.nas render --write               # regenerate experiments/nas/search_space*.json
    python3 -m common.cli.nas export <experiment-id> --out best_arch.json [--port 8080]
    python3 -m common.cli.nas export --from-export nnictl-export.json --out best_arch.json

The export reads trials as the report does (common/report.py, the one trial reader; its docstring says what
reads NNI's files and why): a running or stopped experiment from its own database, a running manager through
nni.experiment (--port), or an `nnictl experiment export` file. It ranks the trials that SUCCEEDED by the
experiment's objective, using the parameters each trial echoed in its final result.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common.nas import ExportError, candidate_table, export_best, render_search_space, result_record
from common.report import ReportError, TrialRecord, failure_listing, load_experiment, load_export, load_manager

ROOT = Path(__file__).resolve().parents[2]
# Where the experiments' configs read each search space (`searchSpaceFile`).
SEARCH_SPACE_FILES: dict[str, Path] = {
    "full": ROOT / "experiments" / "nas" / "search_space.json",
    "smoke": ROOT / "experiments" / "nas" / "search_space.smoke.json",
}


# ----------------------------------------------------------------------------------------- result readers


def export_records(trials: Sequence[TrialRecord], source: str) -> list[dict[str, Any]]:
    """The trials that SUCCEEDED with a final result, as select_best takes them (NNI's parameter listing rides
    along only to point out its mis-pairing); if trials ran but none has one, ExportError says why."""
    records = [result_record(t.trial_id, t.result, t.parameters) for t in trials if t.ok]
    if trials and not records:  # every trial's parameters and the last line of its trial.log
        raise ExportError(f"no trial of {source} has a result of this suite yet; its {len(trials)} trial(s):\n"
                          f"{failure_listing(trials)}")
    return records


def records_from_export(path: str | Path) -> list[dict[str, Any]]:
    """Final results from `nnictl experiment export <id> --type json --filename FILE`."""
    try:
        return export_records(load_export(Path(path)), str(path))
    except ReportError as err:
        raise ExportError(str(err)) from None


def records_from_db(experiment_id: str, registry: str | Path | None = None) -> list[dict[str, Any]]:
    """Final results of a running or stopped experiment, read from its own database."""
    try:
        trials = load_experiment(experiment_id, Path(registry) if registry else None)
    except ReportError as err:
        raise ExportError(f"{err}; or pass --port of its running manager") from None
    return export_records(trials, experiment_id)


def records_from_manager(experiment_id: str, port: int) -> list[dict[str, Any]]:
    """Final results from the running NNI manager on `port`, after checking it serves `experiment_id`."""
    try:
        trials = load_manager(port, experiment_id)
    except ReportError as err:
        raise ExportError(f"{err}; is experiment {experiment_id} running there? Omit --port to read it from its "
                          "database") from None
    return export_records(trials, experiment_id)


# -------------------------------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m common.cli.nas", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("render", help="print or (--write) regenerate the NNI search_space*.json files")
    r.add_argument("--kind", choices=list(SEARCH_SPACE_FILES), default="full")
    r.add_argument("--write", action="store_true", help="write every search space file under experiments/nas/")
    e = sub.add_parser("export", help="write the best candidate of a finished search as build_model JSON")
    e.add_argument("experiment_id", nargs="?", help="NNI experiment id (omit with --from-export)")
    e.add_argument("--out", default="results/nas/best_arch.json",
                   help="architecture JSON to write (details go to <stem>.trial.json); the default is the file "
                        "experiments/pipeline/config.yml reads")
    e.add_argument("--port", type=int, default=None,
                   help="read from the running manager on this port (through nni.experiment), for one whose files "
                        "are not on this machine; by default the experiment's database is read")
    e.add_argument("--registry", default=None, help="nnictl registry (default ~/nni-experiments/.experiment)")
    e.add_argument("--from-export", default=None, help="`nnictl experiment export --type json` file instead of an id")
    e.add_argument("--metric", default="default", help="final-result key to rank by (default: the objective)")
    e.add_argument("--mode", choices=["maximize", "minimize"], default="maximize")
    e.add_argument("--table", action="store_true", help="also print every trial as a markdown table, best first")
    args = p.parse_args(argv)

    if args.command == "render":
        if args.write:
            for kind, path in SEARCH_SPACE_FILES.items():
                path.write_text(render_search_space(kind))
                print(f"wrote {path}")
        else:
            sys.stdout.write(render_search_space(args.kind))
        return 0

    try:
        if args.from_export:
            if args.experiment_id:
                p.error("give an experiment id or --from-export, not both")
            records, source = records_from_export(args.from_export), str(args.from_export)
        elif not args.experiment_id:
            p.error("give an experiment id (or --from-export FILE)")
        elif args.port is not None:
            records, source = records_from_manager(args.experiment_id, args.port), f"{args.experiment_id}@:{args.port}"
        else:
            records, source = records_from_db(args.experiment_id, args.registry), args.experiment_id
        details = export_best(records, args.out, args.metric, args.mode, source)
    except ExportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.table:
        print(candidate_table(records, args.metric, args.mode))
    print(f"best of {len(records)} trials: {details['trial_id']} {args.metric}={details['result'][args.metric]:.4f} "
          f"{details['arch_key']} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
