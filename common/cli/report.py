"""Turn one or more NNI experiments into the seed report's comparison table and trade-off plots.

    python3 -m common.cli.report <experiment-id> [<id> ...] [--export export.json ...] --out results/report

Trials are read from each experiment's own database (`<logDir>/<id>/db/nni.sqlite`, found through
nnictl's registry `~/nni-experiments/.experiment`), so a finished *or* running experiment works
without starting its manager; `--export` also takes `nnictl experiment export --type json` files, and
`--from-report` a report.json written earlier (a committed report, rebuilt with this code:
`python3 -m common.cli.report --from-report results/smoke/report.json --out results/smoke`).
The report itself is built by common/report.py.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from common.report import ReportError, load_experiment, load_export, load_report, write_report


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python3 -m common.cli.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiments", nargs="*", help="NNI experiment ids (running or finished)")
    parser.add_argument("--export", type=Path, action="append", default=[], help="nnictl export --type json file")
    parser.add_argument("--from-report", type=Path, action="append", default=[],
                        help="a report.json this command wrote: its trials")
    parser.add_argument("--out", type=Path, default=Path("results/report"))
    parser.add_argument("--registry", type=Path, default=None, help="nnictl registry (default ~/nni-experiments)")
    args = parser.parse_args(argv)
    if not (args.experiments or args.export or args.from_report):
        parser.error("give at least one experiment id, --export or --from-report file")
    try:
        records = [r for e in args.experiments for r in load_experiment(e, args.registry)]
        records += [r for f in args.export for r in load_export(f)]
        records += [r for f in args.from_report for r in load_report(f)]
        path = write_report(records, args.out)
    except ReportError as err:
        raise SystemExit(f"report: {err}") from None
    print(f"wrote {path} ({len(records)} trials)")


if __name__ == "__main__":
    main()
