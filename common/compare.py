"""The per-stage against the uniform search (issue #29): both fronts, their hypervolumes against one named reference
point, and for each of two budgets a user would set the best point of each search; with a confirmation run, those
points re-trained at the full `cpu` profile beside the search's own (proxy) numbers.

    python3 -m common.cli.report compare <uniform-id> <stagewise-id> [--confirm <confirm-id>] --out results/pareto

Selection reads validation accuracy only (common/front.py); test accuracy is shown beside it. A point is known
by what the trial ran: its pruner, per-stage sparsities and bits (the uniform search runs the same flags with one
value for all stages, common/stagewise.py), so a confirmation trial is matched to the pick it re-trained.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.front import Front, front, pick, reference_point
from common.pareto import hypervolume

SEARCHES = ("uniform", "stagewise")
# The objectives of both search configs (common/configs.py: nsga2), in the same order.
OBJECTIVES: dict[str, str] = {"val_acc": "maximize", "latency_ratio_b1": "minimize", "packed_size_ratio": "minimize"}
# Two budgets a user would set: at most 30 % of the dense model's batch-1 latency, at most 10 % of its size.
BUDGETS: dict[str, dict[str, float]] = {"latency": {"latency_ratio_b1": 0.3}, "size": {"packed_size_ratio": 0.1}}
# The README's pipeline row (FPGM 50 %, 8 bits), through the per-stage flags: confirmed beside the picks.
ANCHOR: dict[str, Any] = {"pruner": "fpgm", "stage_sparsity": "0.5,0.5,0.5,0.5", "stage_bits": "8,8,8,8"}
POINT_KEYS = tuple(ANCHOR)


def point(result: Mapping[str, Any]) -> tuple[Any, ...]:
    """What a trial ran, as its result echoes it: (pruner, stage_sparsity, stage_bits)."""
    return tuple(result.get(k) for k in POINT_KEYS)


def cpu_name(result: Mapping[str, Any]) -> str:
    return f"{result.get('cpu_model', '?')} [{result.get('cpu_isa', '?')}]"


@dataclass(frozen=True)
class Comparison:
    experiments: dict[str, str]  # search -> experiment id
    fronts: dict[str, Front]  # search -> its front, all against one reference point
    planes: dict[str, dict[str, float]]  # search -> cost -> hypervolume of (val_acc, cost) alone
    picks: dict[str, dict[str, dict[str, Any]]]  # budget -> search -> {"within": bool, "result": ...} (or none)
    cpus: list[str]  # every CPU the searches' trials ran on: ratios compare only within one

    def summary(self) -> dict[str, Any]:
        ref = dict(zip(OBJECTIVES, reference_point(OBJECTIVES), strict=True))
        return {"objectives": OBJECTIVES, "reference_point": ref, "experiments": self.experiments, "cpus": self.cpus,
                "hypervolume": {s: f.hypervolume for s, f in self.fronts.items()},
                "hypervolume_2d": self.planes, "fronts": {s: f.summary() for s, f in self.fronts.items()},
                "budgets": BUDGETS,
                "picks": {b: {s: _brief(p) for s, p in by.items()} for b, by in self.picks.items()}}


def _brief(p: dict[str, Any]) -> dict[str, Any]:
    r = p.get("result")
    keys = ("trial_id", *POINT_KEYS, "val_acc", "test_acc", "latency_ratio_b1", "packed_size_ratio", "trial_seconds")
    return {"within": p["within"], "result": None if r is None else {k: r.get(k) for k in keys}}


def compare(results: Mapping[str, Sequence[Mapping[str, Any]]], experiments: Mapping[str, str]) -> Comparison:
    """`results`: per search ("uniform", "stagewise"), its successful trials' final results with `trial_id`."""
    fronts = {s: front(results[s], OBJECTIVES) for s in SEARCHES}
    planes = {s: {cost: _plane(results[s], cost) for cost in OBJECTIVES if cost != "val_acc"} for s in SEARCHES}
    picks: dict[str, dict[str, dict[str, Any]]] = {}
    for budget, limits in BUDGETS.items():
        picks[budget] = {}
        for s in SEARCHES:
            best, closest = pick(results[s], limits)
            picks[budget][s] = {"within": best is not None, "result": best or closest}
    cpus = sorted({cpu_name(r) for s in SEARCHES for r in results[s]})
    return Comparison(dict(experiments), fronts, planes, picks, cpus)


def _plane(results: Sequence[Mapping[str, Any]], cost: str) -> float:
    pts = [(r["val_acc"], r[cost]) for r in results if _number(r.get("val_acc")) and _number(r.get(cost))]
    return hypervolume(pts, (0.0, 1.0), ("maximize", "minimize"))


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def confirm_space(picks: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None) -> dict[str, Any]:
    """A GridSearch space (experiments/pareto/config.confirm.cpu.yml) of the anchor and every distinct point
    picked (`Comparison.summary()["picks"]`), one nested choice each, named after the budgets and searches."""
    names: dict[tuple[Any, ...], list[str]] = {point(ANCHOR): ["anchor"]}
    for budget, by in (picks or {}).items():
        for search, p in by.items():
            if p.get("result") is not None:
                names.setdefault(point(p["result"]), []).append(f"{budget}-{search}")
    values = [{"_name": "+".join(n), **{k: {"_type": "choice", "_value": [v]}
                                        for k, v in zip(POINT_KEYS, pt, strict=True)}} for pt, n in names.items()]
    return {"point": {"_type": "choice", "_value": values}}


def confirmation(comparison: Comparison, confirmed: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per budget and search, the pick's proxy accuracies beside its re-trained (`cpu` profile) ones, and per budget
    whether the proxy ranked the two searches' picks as the re-training does (on validation accuracy)."""
    by_point = {point(r): r for r in confirmed}
    rows = []
    for budget, by in comparison.picks.items():
        for search, p in by.items():
            proxy = p["result"] or {}
            full = by_point.get(point(proxy)) if proxy else None
            rows.append({"budget": budget, "search": search, "within": p["within"], "point": point(proxy),
                         "proxy_val_acc": proxy.get("val_acc"), "proxy_test_acc": proxy.get("test_acc"),
                         "cpu_val_acc": (full or {}).get("val_acc"), "cpu_test_acc": (full or {}).get("test_acc"),
                         "cpu_trial_id": (full or {}).get("trial_id")})
    for budget in comparison.picks:
        pair = [r for r in rows if r["budget"] == budget]
        if all(_number(r["proxy_val_acc"]) and _number(r["cpu_val_acc"]) for r in pair):
            same = (pair[0]["proxy_val_acc"] >= pair[1]["proxy_val_acc"]) == (pair[0]["cpu_val_acc"]
                                                                               >= pair[1]["cpu_val_acc"])
            for r in pair:
                r["proxy_ranks_right"] = same
    return rows


def _pct(v: Any) -> str:
    return f"{100 * v:.2f} %" if _number(v) else "–"


def markdown(c: Comparison, confirmed: list[dict[str, Any]] | None, plot_name: str | None) -> str:
    ref = ", ".join(f"{k} {v:g}" for k, v in zip(OBJECTIVES, reference_point(OBJECTIVES), strict=True))
    lines = ["", "## Per-stage against uniform: one tuner, seed, population and trial count; only the space differs",
             "", f"Experiments: uniform {c.experiments['uniform']}, per-stage {c.experiments['stagewise']}; "
             f"CPU: {'; '.join(c.cpus)}."]
    if len(c.cpus) > 1:
        lines += ["", "**The two searches ran on different CPUs: their latency ratios are not comparable.**"]
    lines += ["", f"Hypervolume of each front against the reference point ({ref}: accuracy 0 and the dense model's "
                  "own latency and size); the 2-D ones of validation accuracy against one cost alone.", "",
              "| search | trials | front | hypervolume | 2-D: latency_ratio_b1 | 2-D: packed_size_ratio |",
              "|---|---|---|---|---|---|"]
    for s, f in c.fronts.items():
        lines.append(f"| {s} | {f.candidates} | {len(f.members)} | {f.hypervolume:.4f} "
                     f"| {c.planes[s]['latency_ratio_b1']:.4f} | {c.planes[s]['packed_size_ratio']:.4f} |")
    lines += ["", "Best point of each search (validation accuracy) within a budget; *closest* where none is within it.",
              "", "| budget | search | trial | pruner | stage sparsity | stage bits | val acc | test acc "
              "| latency_ratio_b1 | packed_size_ratio |", "|---|---|---|---|---|---|---|---|---|---|"]
    for budget, by in c.picks.items():
        wanted = ", ".join(f"{k} ≤ {v:g}" for k, v in BUDGETS[budget].items())
        for s, p in by.items():
            r = p["result"] or {}
            trial = r.get("trial_id", "none") if p["within"] or not r else f"{r.get('trial_id')} *closest*"
            lines.append(f"| {wanted} | {s} | {trial} | {r.get('pruner', '–')} | {r.get('stage_sparsity', '–')} "
                         f"| {r.get('stage_bits', '–')} | {_pct(r.get('val_acc'))} | {_pct(r.get('test_acc'))} "
                         f"| {_ratio(r.get('latency_ratio_b1'))} | {_ratio(r.get('packed_size_ratio'))} |")
    if confirmed:
        lines += ["", "Confirmation: the picks re-trained at the full `cpu` profile beside the search's proxy.", "",
                  "| budget | search | proxy val acc | proxy test acc | cpu val acc | cpu test acc | proxy ranks the "
                  "two searches as cpu |", "|---|---|---|---|---|---|---|"]
        for r in confirmed:
            right = {True: "yes", False: "**no**"}.get(r.get("proxy_ranks_right"), "–")
            lines.append(f"| {r['budget']} | {r['search']} | {_pct(r['proxy_val_acc'])} | {_pct(r['proxy_test_acc'])} "
                         f"| {_pct(r['cpu_val_acc'])} | {_pct(r['cpu_test_acc'])} | {right} |")
    if plot_name:
        lines += ["", f"![per-stage against uniform]({plot_name})"]
    return "\n".join(lines) + "\n"


def _ratio(v: Any) -> str:
    return f"{v:.3f}" if _number(v) else "–"


def plot(c: Comparison, results: Mapping[str, Sequence[Mapping[str, Any]]], out_dir: Path) -> Path:
    """Validation accuracy against each cost, both searches on the same axes: every trial, each front marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from common.report import pareto_front

    costs = [k for k, d in OBJECTIVES.items() if d == "minimize"]
    fig, axes = plt.subplots(1, len(costs), figsize=(5.4 * len(costs), 4.4), squeeze=False)
    for ax, cost in zip(axes[0], costs, strict=True):
        for s, color in zip(SEARCHES, ("tab:blue", "tab:red"), strict=True):
            pts = [(r[cost], r["val_acc"]) for r in results[s] if _number(r.get(cost)) and _number(r.get("val_acc"))]
            if not pts:
                continue
            ax.scatter(*zip(*pts, strict=True), c=color, alpha=0.35, s=18)
            line = [pts[i] for i in pareto_front(pts)]  # this plane's non-dominated points, by cost
            ax.step(*zip(*line, strict=True), where="post", c=color, lw=1.4,
                    label=f"{s} (hypervolume {c.fronts[s].hypervolume:.4f})")
            ax.scatter(*zip(*line, strict=True), c=color, s=36)
        for limits in BUDGETS.values():
            if cost in limits:
                ax.axvline(limits[cost], c="0.4", ls=":", lw=1)
        ax.set_xlabel(f"{cost} (dense = 1)")
        ax.set_ylabel("validation accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("per-stage against uniform search (budgets dotted)")
    fig.tight_layout()
    path = out_dir / "compare_fronts.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write(c: Comparison, results: Mapping[str, Sequence[Mapping[str, Any]]], out_dir: Path,
          confirmed: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """The plot and the confirmation's search space in `out_dir`; returns the comparison's JSON and Markdown."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = plot(c, results, out_dir)
    summary = c.summary()
    rows = confirmation(c, confirmed) if confirmed is not None else None
    if rows is not None:
        summary["confirmation"] = rows
    (out_dir / "confirm_space.json").write_text(json.dumps(confirm_space(summary["picks"]), indent=1) + "\n")
    return {"json": summary, "markdown": markdown(c, rows, path.name)}
