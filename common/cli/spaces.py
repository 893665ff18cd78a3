"""The pruning and quantization experiments' search spaces, rendered from the registries (common/spaces.py).

    python3 -m common.cli.spaces render           # print them
    python3 -m common.cli.spaces render --write   # regenerate experiments/{pruning,quant}/search_space*.json
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from common.spaces import SPACES, render

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m common.cli.spaces", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("render", help="print (or --write) the pruning and quantization search spaces")
    r.add_argument("--write", action="store_true", help=", ".join(SPACES))
    args = parser.parse_args(argv)
    for name, space in SPACES.items():
        text = render(space())
        if args.write:
            (EXPERIMENTS / name).write_text(text, encoding="utf-8")
            print(f"wrote {EXPERIMENTS / name}")
        else:
            sys.stdout.write(f"# experiments/{name}\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
