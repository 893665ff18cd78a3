"""How a stage declares its own trial parameters: argparse flags, plus the checks and profile defaults argparse
cannot express. NNI's `merge_parameter` sets tuner values without argparse's `type`, so every value is checked
again after merging; `common.trial.parse_params` runs what each `add_*_arguments` registered here, and so
needs no knowledge of the stages.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Mapping
from typing import Any

Check = Callable[[argparse.Namespace], None]  # raises ValueError naming the flag
Resolver = Callable[[dict[str, Any], Any], None]  # fills a default from the profile into the parsed values


def add_check(parser: argparse.ArgumentParser, check: Check) -> None:
    parser.__dict__.setdefault("param_checks", []).append(check)


def add_resolver(parser: argparse.ArgumentParser, resolver: Resolver) -> None:
    parser.__dict__.setdefault("param_resolvers", []).append(resolver)


def run_checks(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    for check in parser.__dict__.get("param_checks", []):
        check(args)


def resolve(parser: argparse.ArgumentParser, values: dict[str, Any], profile: Any) -> None:
    for resolver in parser.__dict__.get("param_resolvers", []):
        resolver(values, profile)


def flatten_nested_choices(tuned: Mapping[str, Any]) -> dict[str, Any]:
    """NNI's nested choice (`{"_type": "choice", "_value": [{"_name": "gradual", "prune_schedule": "gradual"}, ...]}`)
    arrives as `{key: {"_name": ..., <parameters>}}`: its parameters become flags like any other, so a grid can list
    the configurations it wants instead of a product; `key` itself names no flag. ValueError when a parameter is set
    twice."""
    out = {k: v for k, v in tuned.items() if not (isinstance(v, Mapping) and "_name" in v)}
    for key, chosen in tuned.items():
        if key in out:
            continue
        inner = flatten_nested_choices({k: v for k, v in chosen.items() if k != "_name"})
        twice = sorted(set(inner) & set(out))
        if twice:
            raise ValueError(f"search space parameter {key}={chosen['_name']!r} sets {', '.join(twice)} again")
        out |= inner
    return out


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def require(ok: bool, flag: str, valid: str, value: Any) -> None:
    if not ok:
        raise ValueError(f"{flag} must be {valid}, got {value!r}")
