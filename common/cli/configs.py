"""The NNI configs experiments/*/config*.yml, rendered from their one definition (common/configs.py).

    python3 -m common.cli.configs render                          # print every config
    python3 -m common.cli.configs render pruning/config.cpu.yml   # print one
    python3 -m common.cli.configs render --write                  # regenerate them all
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from common.configs import CONFIGS, Config, render

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


def unknown_files(experiments: Path = EXPERIMENTS) -> list[Path]:
    """Config files on disk that the definition does not render (the drift test's other direction)."""
    known = {experiments / c.path for c in CONFIGS}
    return sorted(p for p in experiments.glob("*/config*.yml") if p not in known)


def write(experiments: Path = EXPERIMENTS) -> int:
    """Write the configs that changed; 1 if a config file there is not in the definition."""
    for config in CONFIGS:
        path, text = experiments / config.path, render(config)
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    print(f"{len(CONFIGS)} configs up to date under {experiments}")
    unknown = unknown_files(experiments)
    for path in unknown:  # not deleted: it may be new work to move into common/configs.py
        print(f"error: {path} is not in common/configs.py: add it there or delete it", file=sys.stderr)
    return 1 if unknown else 0


def _find(name: str, parser: argparse.ArgumentParser) -> Config:
    wanted = name.removeprefix("experiments/")
    for config in CONFIGS:
        if config.path == wanted:
            return config
    return parser.error(f"no config {name!r}; known: {', '.join(c.path for c in CONFIGS)}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m common.cli.configs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("render", help="print (or --write) the experiments' NNI configs")
    r.add_argument("name", nargs="?", help="one config, e.g. pruning/config.cpu.yml (default: all)")
    r.add_argument("--write", action="store_true", help="write every experiments/*/config*.yml")
    args = parser.parse_args(argv)
    if args.write:
        if args.name:
            parser.error("--write writes every config: give no name")
        return write()
    if args.name:
        sys.stdout.write(render(_find(args.name, parser)))
    else:
        for config in CONFIGS:
            sys.stdout.write(f"# ==> experiments/{config.path} <==\n{render(config)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
