"""The NNI configs experiments/*/config*.yml, rendered from their one definition (common/configs.py).

    python3 -m common.cli.configs render                          # print every config
    python3 -m common.cli.configs render pruning/config.cpu.yml   # print one
    python3 -m common.cli.configs render --write                  # regenerate them all
    python3 -m common.cli.configs check experiments/pareto/config.yml   # before nnictl create: one line if wrong

`check` builds the config's tuner as NNI's dispatcher would (a suite tuner, `common.*`: its classArgs, then its
search space), so a bad objective, classArg or search-space type is one line naming it, in seconds, instead of an
experiment that sits RUNNING with no trial or ends "Tuner did not connect" with the reason in dispatcher.log.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
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


def check(path: Path) -> str:
    """What `nnictl create` would fail on in the config at `path`, as one line; "" when nothing."""
    import yaml

    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        return f"{path}: not a readable YAML config ({type(err).__name__}: {str(err).splitlines()[0]})"
    if not isinstance(config, dict):
        return f"{path}: not an NNI config (a YAML mapping)"
    space = config.get("searchSpace")
    if space is None and config.get("searchSpaceFile"):
        space_file = path.parent / str(config["searchSpaceFile"])
        try:
            space = json.loads(space_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            return f"{path}: searchSpaceFile {space_file}: {type(err).__name__}: {err}"
    tuner = config.get("tuner") or {}
    class_name = str(tuner.get("className") or "")
    if not class_name.startswith("common."):  # NNI's built-in tuners are NNI's to check
        return ""
    from nni.tuner import Tuner

    module, _, name = class_name.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        return f"{path}: tuner className {class_name}: {err}"
    if not (isinstance(cls, type) and issubclass(cls, Tuner)):  # an advisor (Hyperband) needs the dispatcher's channel
        return ""
    nni_log = logging.getLogger("nni")
    level = nni_log.level
    nni_log.setLevel(logging.WARNING)  # the built-in tuners' INFO lines ("Grid initialized")
    try:
        built = cls(**(tuner.get("classArgs") or {}))  # what the dispatcher does, then the search space
        built.update_search_space(space or {})
    except (TypeError, ValueError, KeyError) as err:
        return f"{path}: tuner {name}: {err}"
    finally:
        nni_log.setLevel(level)
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m common.cli.configs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("render", help="print (or --write) the experiments' NNI configs")
    r.add_argument("name", nargs="?", help="one config, e.g. pruning/config.cpu.yml (default: all)")
    r.add_argument("--write", action="store_true", help="write every experiments/*/config*.yml")
    c = sub.add_parser("check", help="check configs before nnictl create: the tuner's classArgs and search space")
    c.add_argument("configs", nargs="+", type=Path, help="config files, e.g. experiments/pareto/config.yml")
    args = parser.parse_args(argv)
    if args.command == "check":
        problems = [problem for path in args.configs if (problem := check(path))]
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        if not problems:
            print(f"{len(args.configs)} config(s) ok")
        return 1 if problems else 0
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
