"""The per-stage search space of experiments/pareto/, rendered from its one definition (common/stagewise.py).

    python3 -m common.cli.pareto render           # print it
    python3 -m common.cli.pareto render --write   # regenerate experiments/pareto/search_space.json
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from common.stagewise import search_space_json

SEARCH_SPACE_FILE = Path(__file__).resolve().parents[2] / "experiments" / "pareto" / "search_space.json"


def render() -> str:
    # One line per key, as the NAS space: diffs stay readable.
    space = search_space_json()
    return "{\n" + ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in space.items()) + "\n}\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python3 -m common.cli.pareto", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("render", help="print (or --write) the per-stage search space")
    r.add_argument("--write", action="store_true", help=f"write {SEARCH_SPACE_FILE.name}")
    args = parser.parse_args(argv)
    if args.write:
        SEARCH_SPACE_FILE.write_text(render())
        print(f"wrote {SEARCH_SPACE_FILE}")
    else:
        print(render(), end="")


if __name__ == "__main__":
    main()
