"""`python3 -m common.cli.report compare`: the per-stage against the uniform search (common/compare.py).

    python3 -m common.cli.report compare <uniform-id> <stagewise-id> --out results/pareto
    python3 -m common.cli.report compare <uniform-id> <stagewise-id> --confirm <confirm-id> --out results/pareto

Writes the report of both experiments (report.md, report.json, each front) with the comparison added: both fronts
on one plot (compare_fronts.png), their hypervolumes against one reference point, the best point of each search
for each budget, and confirm_space.json (the grid `python3 -m common.cli.record --pareto-confirm` re-trains).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common import compare
from common.report import ReportError, experiment_config, front_results, load_experiment, write_report

# What must be equal in the two experiments' configs for "only the space differs" to hold.
SAME = ("trialCommand", "tuner", "maxTrialNumber", "trialConcurrency")


def differences(configs: dict[str, dict[str, Any]]) -> list[str]:
    """The settings besides the search space in which the searches' configs differ, named."""
    uniform, stagewise = (configs[s] for s in compare.SEARCHES)
    return [f"{key}: {uniform.get(key)!r} / {stagewise.get(key)!r}" for key in SAME
            if uniform.get(key) != stagewise.get(key)]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python3 -m common.cli.report compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("uniform", help="experiment id of the uniform search (config.uniform.search.yml)")
    parser.add_argument("stagewise", help="experiment id of the per-stage search (config.stagewise.search.yml)")
    parser.add_argument("--confirm", metavar="EXPERIMENT_ID",
                        help="the confirmation experiment (config.confirm.cpu.yml): the picks re-trained at cpu")
    parser.add_argument("--registry", type=Path, default=None,
                        help="nnictl registry: its .experiment file or its folder (default ~/nni-experiments)")
    parser.add_argument("--out", type=Path, default=Path("results/pareto"))
    args = parser.parse_args(argv)
    ids = dict(zip(compare.SEARCHES, (args.uniform, args.stagewise), strict=True))
    try:
        records = [r for e in [*ids.values(), *([args.confirm] if args.confirm else [])]
                   for r in load_experiment(e, args.registry)]
        results = {s: front_results(records, e) for s, e in ids.items()}
        empty = [f"{s} {ids[s]}" for s in compare.SEARCHES if not results[s]]
        if empty:
            raise ReportError(f"no trial with a final result in {', '.join(empty)}")
        comparison = compare.compare(results, ids)
        confirmed = front_results(records, args.confirm) if args.confirm else None
        path = write_report(records, args.out, {e: compare.OBJECTIVES for e in ids.values()})
        written = compare.write(comparison, results, args.out, confirmed)
    except (ReportError, OSError) as err:
        raise SystemExit(f"report compare: {err}") from None
    unequal = differences({s: experiment_config(e, args.registry) for s, e in ids.items()})
    if unequal:  # the comparison is still shown, but it is not one at equal search cost
        print(f"warning: the searches differ in more than their space: {'; '.join(unequal)}", file=sys.stderr)
    written["json"]["unequal_settings"] = unequal
    report = json.loads((args.out / "report.json").read_text())
    (args.out / "report.json").write_text(json.dumps({**report, "comparison": written["json"]}, indent=1,
                                                     default=str) + "\n")
    warning = [f"\n**The searches differ in more than their space: {'; '.join(unequal)}.**\n"] if unequal else []
    path.write_text(path.read_text() + "".join(warning) + written["markdown"])
    print(f"wrote {path} (uniform hypervolume {comparison.fronts['uniform'].hypervolume:.4f}, per-stage "
          f"{comparison.fronts['stagewise'].hypervolume:.4f}; {len(comparison.cpus)} CPU)")


if __name__ == "__main__":
    main()
