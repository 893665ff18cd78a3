"""What the portable 7-bit weight grid costs against the full 8-bit grid, measured rather than assumed.

    python3 -m common.cli.grid_cost --profile cpu --dataset fashion-mnist --out results/cpu/grid_cost

1. run each configuration's trial (CONFIGS) twice, `--int8-scheme reduced` and `--int8-scheme full`, same seed,
   from the cached dense / pruned models, keeping each deployed file (`--keep-model`) and reading its final result;
2. time every kept int8 file on ONNX Runtime and OpenVINO, interleaved in one process (b1 and b64, 1 thread);
3. write `grid_cost.json` and `grid_cost.md` (docs/int8.md's table): deployed test accuracy on both grids, the
   difference, the emulated AVX2-only agreement of each file (`--portability-check avx2`), latency ratios.

`--configs NAME ...` runs some configurations; their rows replace those in an existing grid_cost.json and the
others' rows stay (each pair's latencies are interleaved within its own run, which is what the ratio needs).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common.cache import default_home
from common.deploy import runtime_module
from common.metrics import measure_latency

GRIDS = ("reduced", "full")
CONFIGS: dict[str, list[str]] = {
    "QAT 8-bit from dense": ["trials/quant.py", "--algorithm", "qat", "--bits", "8", "--start", "dense"],
    "PTQ 8-bit from dense": ["trials/quant.py", "--algorithm", "ptq", "--bits", "8", "--start", "dense"],
    "LSQ 4-bit from 50 % FPGM": ["trials/quant.py", "--algorithm", "lsq", "--bits", "4", "--start", "pruned"],
    "pipeline: 50 % FPGM → QAT 8-bit, distilled": [
        "trials/pipeline.py", "--pruner", "fpgm", "--sparsity", "0.5", "--algorithm", "qat", "--bits", "8",
        "--distill-weight", "0.5"],
}
KEYS = ("val_acc", "test_acc", "weight_bits", "runtime_used", "agreement_val", "agreement_val_avx2_ort",
        "agreement_val_avx2_openvino", "portable_avx2", "seconds_portability", "cpu_model", "cpu_isa", "seed")


def run_trial(argv: Sequence[str], log: Path) -> dict[str, Any]:
    """Run one trial script to the end; its final result (the `FINAL {...}` line a hand-run trial prints)."""
    with open(log, "w") as out:
        done = subprocess.run([sys.executable, *argv], stdout=out, stderr=subprocess.STDOUT)
    finals = [line for line in log.read_text().splitlines() if line.startswith("FINAL ")]
    if done.returncode != 0 or not finals:
        raise SystemExit(f"grid_cost: {' '.join(argv)} failed (exit status {done.returncode}); see {log}")
    return json.loads(finals[-1][len("FINAL "):])


def interleaved_latency(files: dict[str, Path], input_shape: Sequence[int], repeats: int) -> dict[str, Any]:
    """Median ms per batch of every file on both runtimes, all timed round-robin in this one process."""
    models = {f"{name}|{r}": runtime_module(r, path, threads=1) for name, path in files.items()
              for r in ("ort", "openvino")}
    return measure_latency(models, (1, 64), input_shape=input_shape, threads=1, warmup=3, repeats=repeats)


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| configuration | grid | weight bits | val acc | test acc | Δ test (7-bit − 8-bit) | AVX2-only agreement "
             "ORT / OpenVINO | portable | ORT b1 / b64 ms | OpenVINO b1 / b64 ms |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        delta = "" if r["delta_test_pt"] is None else f"{r['delta_test_pt']:+.2f} pt"
        avx2 = " / ".join("–" if r[k] is None else f"{100 * r[k]:.1f} %"
                          for k in ("agreement_val_avx2_ort", "agreement_val_avx2_openvino"))
        lat = {rt: f"{r['latency'][rt]['1']:.2f} / {r['latency'][rt]['64']:.1f}" for rt in ("ort", "openvino")}
        lines.append(f"| {r['config']} | {r['grid']} | {r['weight_bits']} | {100 * r['val_acc']:.2f} % "
                     f"| {100 * r['test_acc']:.2f} % | {delta} | {avx2} | {r['portable_avx2']} "
                     f"| {lat['ort']} | {lat['openvino']} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python3 -m common.cli.grid_cost", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--dataset", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS), metavar="NAME")
    parser.add_argument("--repeats", type=int, default=30, help="timed rounds per batch size")
    parser.add_argument("--out", type=Path, default=Path("results/grid_cost"), help="grid_cost.json and .md")
    parser.add_argument("--work", type=Path, default=default_home() / "grid_cost",
                        help="the trials' logs and kept int8 files (default: $NNI_SUITE_HOME/grid_cost)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    common = ["--profile", args.profile, "--seed", str(args.seed), "--portability-check", "avx2",
              *(["--dataset", args.dataset] if args.dataset else [])]
    results, files = {}, {}
    for name in args.configs:
        i = list(CONFIGS).index(name)  # stable file names: a later run of other configs never overwrites these
        for grid in GRIDS:
            files[(name, grid)] = args.work / f"config{i}.{grid}.int8.onnx"
            results[(name, grid)] = run_trial([*CONFIGS[name], *common, "--int8-scheme", grid,
                                               "--keep-model", str(files[(name, grid)])],
                                              args.work / f"config{i}.{grid}.log")
            print(f"{name}, {grid}: test {results[(name, grid)]['test_acc']:.4f}", flush=True)
    latency = interleaved_latency({f"{n}|{g}": f for (n, g), f in files.items()}, _input_shape(files), args.repeats)
    rows = []
    for (name, grid), res in results.items():
        full = results[(name, "full")]["test_acc"]
        rows.append({"config": name, "grid": grid, **{k: res.get(k) for k in KEYS},
                     "delta_test_pt": None if grid == "full" else 100 * (res["test_acc"] - full),
                     "latency": {rt: {str(b): ms for b, ms in latency[f"{name}|{grid}|{rt}"].items()}
                                 for rt in ("ort", "openvino")}})
    command = " ".join(["python3 -m common.cli.grid_cost", *(argv or sys.argv[1:])])
    rows, commands = _merged(args.out / "grid_cost.json", rows, command)
    (args.out / "grid_cost.json").write_text(json.dumps({"commands": commands, "rows": rows}, indent=1) + "\n")
    (args.out / "grid_cost.md").write_text(table(rows) + "\n")
    print(table(rows))


def _merged(path: Path, rows: list[dict[str, Any]], command: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The new rows in CONFIGS order, with the rows of configurations this run did not repeat kept from `path`."""
    old = json.loads(path.read_text()) if path.exists() else {}
    commands = old.get("commands") or ([old["command"]] if "command" in old else [])
    ran = {r["config"] for r in rows}
    merged = [r for r in old.get("rows", []) if r["config"] not in ran and r["config"] in CONFIGS] + rows
    order = list(CONFIGS)
    return sorted(merged, key=lambda r: (order.index(r["config"]), GRIDS.index(r["grid"]))), [*commands, command]


def _input_shape(files: dict[tuple[str, str], Path]) -> tuple[int, ...]:
    import onnx

    dims = onnx.load(str(next(iter(files.values())))).graph.input[0].type.tensor_type.shape.dim
    return tuple(d.dim_value for d in dims[1:])


if __name__ == "__main__":
    main()
