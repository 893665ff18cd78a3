"""Write the generated parts of README.md and docs/*.md from the committed records, so no measured number in
the docs is typed by hand:

    python3 -m common.cli.docs --write   # rewrite every generated block
    python3 -m common.cli.docs           # check: exit 1 naming each block that differs (the test suite runs this)

A generated block is `<!-- generated: KIND ARG -->` ... `<!-- end generated -->`; KIND is one of
  headline DIR [speed=FILE]
                 the headline configurations of the units DIR/report.json and DIR/seed<k>/report.json, merged (mean
                 ± std over seeds, n, each seed's CPU, data set); speed-ups from FILE, one side-by-side run on one CPU
                 (`python3 -m common.cli.bench headline`), against dense fp32 ONNX Runtime at 1 thread
  speed DIR      one table per CPU class of DIR/<class>.json (the headline bench's records)
  summary DIR    the summary table of DIR/report.md, with the CPU it ran on
  table FILE     the first markdown table of FILE (e.g. results/cpu/grid_cost/grid_cost.md)
  result-keys    what each result key means, from common/record.py
Rebuild a report first (`python3 -m common.cli.report --from-report DIR/report.json --out DIR`) when its code changed.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from common import record
from common.cli.bench_headline import headline_speedups, speed_markdown
from common.report import headline_markdown, headline_rows, load_report

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"(<!-- generated: (?P<kind>[\w-]+)(?: (?P<arg>[^\n]*?))? -->\n)(?P<body>.*?)"
                   r"(<!-- end generated -->)", re.DOTALL)


class DocsError(RuntimeError):
    pass


def _source(arg: str | None, name: str = "") -> Path:
    path = ROOT / (arg or "") / name
    if not arg or not path.is_file():
        raise DocsError(f"generated block names {arg!r}: no file {path.relative_to(ROOT)}")
    return path


def unit_reports(arg: str | None) -> list[Path]:
    """The units of DIR: DIR/report.json (its seeds) and every DIR/seed<k>/report.json recorded since."""
    first = _source(arg, "report.json")
    return [first, *sorted(first.parent.glob("seed*/report.json"), key=lambda p: p.parent.name)]


def _speed(path: str) -> dict:
    data = json.loads(_source(path).read_text())
    if data.get("quick"):
        raise DocsError(f"{path} is a --quick run (16x16 inputs, 2 rounds): not a record; rerun the full bench")
    return data


def headline(arg: str | None) -> list[str]:
    directory, *options = (arg or "").split()
    speed_file = next((o.removeprefix("speed=") for o in options if o.startswith("speed=")), None)
    units = unit_reports(directory)
    records = [r for path in units for r in load_report(path)]
    rows = headline_rows(records)
    trials = [r.result for r in records if r.result]
    profile = ", ".join(sorted({str(r.get("profile")) for r in trials}))
    dataset = ", ".join(sorted({str(r.get("dataset")) for r in trials}))
    sources = ", ".join(f"`{p.relative_to(ROOT)}`" for p in units)
    text = (f"Test accuracy on {dataset} (`{profile}` profile): mean ± std over n seeds, Δ paired with each seed's "
            f"own dense model, from the units {sources}; the last column names the CPU each seed's trials ran on.")
    if speed_file is None:
        return [text + " Speed-ups as each trial measured them (against its dense model in eager torch, on its own "
                "CPU: compare them only within one CPU).", "", *headline_markdown(rows)]
    speed = _speed(speed_file)
    return [text + f" Speed-ups from one side-by-side run on `{speed['cpu_model']}` [{speed['cpu_isa']}] "
            f"(`{speed_file}`): each configuration's deployed model against the dense model in fp32 ONNX Runtime, "
            "1 thread, untrained weights (speed does not depend on them).", "",
            *headline_markdown(rows, headline_speedups(speed))]


def speed(arg: str | None) -> list[str]:
    directory = ROOT / (arg or "")
    files = sorted(directory.glob("*.json")) if arg and directory.is_dir() else []
    if not files:
        return [f"No headline speed run recorded in `{arg}` yet: `python3 -m common.cli.bench headline` writes one."]
    lines: list[str] = []
    for path in files:
        data = _speed(str(path.relative_to(ROOT)))
        lines += [f"#### {data['cpu_class']}", "", *speed_markdown(data), "",
                  f"From `{path.relative_to(ROOT)}`.", ""]
    return lines[:-1]


def summary(arg: str | None) -> list[str]:
    lines = _source(arg, "report.md").read_text().splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("CPU: ")),  # older records name no CPU
                 next((i for i, line in enumerate(lines) if line.startswith("Accuracy is top-1")), None))
    table = next((i for i, line in enumerate(lines) if line.startswith("| model |")), None)
    if start is None or table is None:
        raise DocsError(f"{arg}/report.md has no summary table: rebuild it with common.cli.report")
    end = next((i for i in range(table, len(lines)) if not lines[i].startswith("|")), len(lines))
    return [line for line in lines[start:end] if not line.startswith("**These trials ran")] + \
        ["", f"From `{arg}/report.md`."]


def table(arg: str | None) -> list[str]:
    lines = _source(arg).read_text().splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("|")), None)
    if start is None:
        raise DocsError(f"{arg} holds no markdown table")
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return [*lines[start:end], "", f"From `{arg}`."]


def result_keys(arg: str | None) -> list[str]:
    lines = ["| key | meaning |", "|---|---|"]
    for keys, meaning in record.RESULT_KEYS:
        lines.append(f"| {', '.join(f'`{k}`' for k in keys.split(', '))} | {meaning} |")
    lines += ["", "Size kinds (`size_kind`):", "", "| kind | what the size counts |", "|---|---|"]
    lines += [f"| `{kind}` | {meaning} |" for kind, meaning in record.SIZE_KINDS.items()]
    lines += ["", "Costs a budget can cap (`--max-<key>`, common/objective.py):", "", "| key | meaning |", "|---|---|"]
    lines += [f"| `{key}` | {meaning} |" for key, meaning in record.COST_KEYS.items()]
    renamed = [f"`{old}` → `{new}`" for old, new in record.RENAMED.items()]
    renamed += [f"`{old}` → `{prefix}_size_mb` ({kind})" for old, (prefix, kind) in record.RENAMED_BYTES.items()]
    return [*lines, "", "Keys of earlier releases, read under their new names (`common.record.upgrade`): "
            + "; ".join(renamed) + "."]


KINDS: dict[str, Callable[[str | None], list[str]]] = {
    "headline": headline, "speed": speed, "summary": summary, "table": table, "result-keys": result_keys}


def render(text: str) -> str:
    """`text` with every generated block's body rewritten."""
    def body(match: re.Match) -> str:
        kind, arg = match["kind"], match["arg"]
        if kind not in KINDS:
            raise DocsError(f"unknown generated block {kind!r}; one of {', '.join(KINDS)}")
        return match.group(1) + "\n" + "\n".join(KINDS[kind](arg)) + "\n\n" + match.group(5)
    return BLOCK.sub(body, text)


def documents(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def stale(paths: Sequence[Path]) -> list[Path]:
    """The documents whose generated blocks differ from what `render` writes."""
    return [p for p in paths if render(p.read_text()) != p.read_text()]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python3 -m common.cli.docs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="rewrite the generated blocks (default: check only)")
    args = parser.parse_args(argv)
    try:
        paths = stale(documents())
        if args.write:
            for path in paths:
                path.write_text(render(path.read_text()))
                print(f"wrote {path.relative_to(ROOT)}")
        elif paths:
            sys.exit("generated blocks differ from the records in: " + ", ".join(str(p.relative_to(ROOT))
                     for p in paths) + "; regenerate: python3 -m common.cli.docs --write")
    except (DocsError, OSError, ValueError, KeyError) as err:
        sys.exit(f"docs: {err}")


if __name__ == "__main__":
    main()
