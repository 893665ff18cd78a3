"""Fronts and hypervolumes of several objectives, each maximised or minimised (common/pareto_tuner.py's).

Points are tuples of objective values in the order of `directions`; internally every objective is turned
into one to minimise (a maximised one is negated), so dominance and hypervolume have one definition.
"""

from __future__ import annotations

from collections.abc import Sequence


def _minimised(point: Sequence[float], directions: Sequence[str]) -> tuple[float, ...]:
    return tuple(-v if d == "maximize" else v for v, d in zip(point, directions, strict=True))


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """`a` is no worse than `b` in every (minimised) objective and better in one."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(x < y for x, y in zip(a, b, strict=True))


def non_dominated(points: Sequence[Sequence[float]], directions: Sequence[str]) -> list[int]:
    """Indices of the points no other point dominates (duplicates all kept), in input order."""
    mins = [_minimised(p, directions) for p in points]
    return [i for i, p in enumerate(mins) if not any(dominates(q, p) for q in mins)]


def hypervolume(points: Sequence[Sequence[float]], reference: Sequence[float], directions: Sequence[str]) -> float:
    """Volume of objective space the points dominate, bounded by `reference` (a point every useful trial
    beats: e.g. accuracy 0, the dense model's latency and size). Points not better than the reference in
    every objective add nothing. Exact, by slicing along the first objective (fine for fronts of tens)."""
    ref = _minimised(reference, directions)
    mins = [m for m in (_minimised(p, directions) for p in points) if all(x < r for x, r in zip(m, ref, strict=True))]
    return _volume(mins, ref)


def _volume(points: list[tuple[float, ...]], ref: tuple[float, ...]) -> float:
    if not points:
        return 0.0
    if len(ref) == 1:
        return ref[0] - min(p[0] for p in points)
    ordered = sorted(points)
    total = 0.0
    for i, p in enumerate(ordered):
        upper = ordered[i + 1][0] if i + 1 < len(ordered) else ref[0]
        if upper > p[0]:  # the slab [p0, upper) is dominated by the points up to i in the other objectives
            total += (upper - p[0]) * _volume([q[1:] for q in ordered[:i + 1]], ref[1:])
    return total
