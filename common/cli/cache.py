"""Inspect and tidy the artifact cache (common/cache.py).

    python3 -m common.cli.cache list  [--cache-dir DIR]             # entries, quarantined entries, locks
    python3 -m common.cli.cache prune [--cache-dir DIR] [--dry-run] # delete `*.corrupt-*` and locks nobody holds
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from common.cache import default_home, describe_owner, prune, scan


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m common.cli.cache", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["list", "prune"])
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: $NNI_SUITE_HOME/artifacts")
    parser.add_argument("--dry-run", action="store_true", help="prune: only say what would be removed")
    args = parser.parse_args(argv)
    root = (args.cache_dir or default_home() / "artifacts").expanduser()
    if not root.is_dir():  # a mistyped --cache-dir must not read as an empty cache
        what = "is not a folder" if root.exists() else "does not exist"
        print(f"error: artifact cache {root} {what} (--cache-dir, default $NNI_SUITE_HOME/artifacts)", file=sys.stderr)
        return 1
    if args.command == "prune":
        removed = prune(root, args.dry_run)
        print(f"{'would remove' if args.dry_run else 'removed'} {len(removed)} item(s) under {root}")
        return 0
    found = scan(root)
    print(f"artifact cache {root}")
    for kind in ("entries", "uncommitted", "quarantined"):
        total = sum(item["bytes"] for item in found[kind])
        print(f"{kind}: {len(found[kind])} ({total / 1e6:.1f} MB)")
        for item in found[kind]:
            print(f"  {item['path'].name}  {item['bytes'] / 1e6:.1f} MB")
    print(f"locks: {len(found['locks'])}")
    for item in found["locks"]:
        print(f"  {item['path'].name}  {'free (stale)' if item['free'] else describe_owner(item['owner'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
