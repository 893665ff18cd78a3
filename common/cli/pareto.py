"""The search spaces of experiments/pareto/, rendered from their one definition: the per-stage space and the
uniform one it is compared with (one sparsity and one bit width for all stages, common/stagewise.py), and the
confirmation's grid with its anchor point only (the recorder adds a comparison's picks, common/compare.py).

    python3 -m common.cli.pareto render           # print them
    python3 -m common.cli.pareto render --write   # regenerate experiments/pareto/search_space*.json
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from common.compare import confirm_space
from common.stagewise import search_space_json, uniform_search_space_json

FOLDER = Path(__file__).resolve().parents[2] / "experiments" / "pareto"
SEARCH_SPACE_FILE = FOLDER / "search_space.json"
SEARCH_SPACE_FILES: dict[Path, Callable[[], dict[str, Any]]] = {
    SEARCH_SPACE_FILE: search_space_json,
    FOLDER / "search_space.uniform.json": uniform_search_space_json,
    FOLDER / "search_space.confirm.json": confirm_space,
}


def render(space: Callable[[], dict[str, Any]] = search_space_json) -> str:
    # One line per key, as the NAS space: diffs stay readable.
    return "{\n" + ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in space().items()) + "\n}\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python3 -m common.cli.pareto", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("render", help="print (or --write) the per-stage and the uniform search spaces")
    r.add_argument("--write", action="store_true", help=", ".join(p.name for p in SEARCH_SPACE_FILES))
    args = parser.parse_args(argv)
    for path, space in SEARCH_SPACE_FILES.items():
        if args.write:
            path.write_text(render(space))
            print(f"wrote {path}")
        else:
            print(f"# {path.name}\n{render(space)}", end="")


if __name__ == "__main__":
    main()
