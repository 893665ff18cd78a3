"""The README and docs/: generated tables equal what `python3 -m common.cli.docs` writes from the committed
records, every relative link resolves, no committed file names a machine path, and the README stays short."""

import json
import re
import subprocess

import pytest

from common.cli import docs
from common.report import headline_rows, load_report
from tests.nnictl_utils import ROOT

DOCUMENTS = docs.documents(ROOT)
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_committed_docs_are_what_the_generator_writes():
    assert not docs.stale(DOCUMENTS), "regenerate: python3 -m common.cli.docs --write"


def test_the_generator_notices_a_table_typed_by_hand(tmp_path):
    readme = (ROOT / "README.md").read_text()
    assert "<!-- generated: headline results/cpu speed=results/speed/" in readme  # speed-ups from one CPU's run
    typed = tmp_path / "README.md"
    typed.write_text(readme.replace("| dense ResNet-18 |", "| dense ResNet-18 (typed) |", 1))
    assert docs.stale([typed]) == [typed]
    with pytest.raises(docs.DocsError, match="unknown generated block 'nonsense'"):
        docs.render("<!-- generated: nonsense -->\n<!-- end generated -->")
    with pytest.raises(docs.DocsError, match="no file results/nowhere/report.json"):
        docs.render("<!-- generated: headline results/nowhere -->\n<!-- end generated -->")


def test_readme_headline_has_every_recorded_configuration_with_its_seeds():
    units = docs.unit_reports("results/cpu")  # seed 0's report and every seed<k> unit recorded since
    rows = headline_rows([r for path in units for r in load_report(path)])
    readme = (ROOT / "README.md").read_text()
    assert rows, "results/cpu/report.json has no headline configurations: rebuild it with common.cli.report"
    for row in rows:
        line = next(line for line in readme.splitlines() if line.startswith(f"| {row['model']} |"))
        assert line.split(" | ")[1] == str(row["seeds"])
        assert all(f"{seed}: {cpu}" in line for seed, cpu in row["seed_cpus"].items())  # each seed's CPU


def test_readme_speed_columns_come_from_one_recorded_speed_run():
    recorded = sorted((ROOT / "results" / "speed").glob("*.json"))
    markers = re.findall(r"<!-- generated: headline (.*?) -->", (ROOT / "README.md").read_text())
    assert len(markers) == 1
    if not recorded:
        pytest.skip("no results/speed record yet: python3 -m common.cli.bench headline")
    named = [o.removeprefix("speed=") for o in markers[0].split() if o.startswith("speed=")]
    assert named and ROOT / named[0] in recorded, f"README's headline must name one of {recorded} as speed=FILE"


def _unit(report: dict, seed: int, cpu_model: str, cpu_isa: str, shift: float) -> dict:
    """`report`'s trials as another seed's unit recorded on another CPU, every model `shift` less accurate than
    the same trial's dense model was (Δ paired: the dense models of this unit are `shift` / 2 less accurate)."""
    trials = []
    for t in report["trials"]:
        r = dict(t["result"] or {})
        if r:
            r |= {"seed": seed, "cpu_model": cpu_model, "cpu_isa": cpu_isa}
            dense = r.get("dense_test_acc")
            if r.get("trial") == "baseline":
                r["test_acc"] = r["accuracy"] = r["test_acc"] - shift / 2
            elif dense is not None:
                r["dense_test_acc"] = dense - shift / 2
                r["test_acc"] = r["accuracy"] = r["test_acc"] - shift
                r["delta_test_acc"] = r["test_acc"] - r["dense_test_acc"]
        trials.append({**t, "experiment": f"{t['experiment']}-seed{seed}", "result": r or None})
    return {"trials": trials}


def _speed_record(cpu_class: str, factor: float, quick: bool = False) -> dict:
    """A headline bench record of bench_headline's shape: every configuration `factor` x faster per row below."""
    from common.cli import bench_headline as bh

    def timed(i: int, t: int) -> dict:
        ms = {"1": 10.0 / factor ** i, "64": 400.0 / factor ** i}
        return {"threads": t, "runtime": "onnxruntime fp32" if i < 3 else "openvino int8", "ms": ms,
                "vs_dense_ort": {b: 10.0 * (40 if b == "64" else 1) / ms[b] for b in ms},
                "vs_dense_torch": {b: 1.5 * 10.0 * (40 if b == "64" else 1) / ms[b] for b in ms}}

    return {"cpu_class": cpu_class, "cpu_model": f"CPU of {cpu_class}", "cpu_isa": cpu_class, "native_bf16": False,
            "cores": 2, "versions": {"torch": "2", "onnxruntime": "1", "openvino": None}, "input_shape": [1, 28, 28],
            "repeats": 20, "quick": quick, "headline_rows": bh.HEADLINE_SPEED,
            "configurations": [{"label": c.label, "size_ratio": 1.0,
                                "by_threads": {str(t): timed(i, t) for t in (1, 2)}} for i, c in enumerate(bh.CONFIGS)],
            "trained_check": {"configuration": "PTQ 8-bit from dense", "trained": {"seconds": 9, "data": "x",
                                                                                  "steps": 60, "test_acc": 0.7},
                              "trained_over_untrained_ms": {"1": {"ort": {"1": 1.02, "64": 0.99}}}}}


def test_headline_merges_units_and_takes_speed_from_one_cpus_run(tmp_path, monkeypatch):
    committed = json.loads((ROOT / "results" / "cpu" / "report.json").read_text())
    (tmp_path / "results" / "cpu" / "seed1").mkdir(parents=True)
    (tmp_path / "results" / "speed").mkdir()
    (tmp_path / "results" / "cpu" / "report.json").write_text(json.dumps(committed))
    (tmp_path / "results" / "cpu" / "seed1" / "report.json").write_text(
        json.dumps(_unit(committed, 1, "AMD EPYC 9B14", "avx2+avx512f+avx512_vnni", 0.02)))
    monkeypatch.setattr(docs, "ROOT", tmp_path)
    alone = {r["model"]: r for r in committed["headline"]}

    def row(lines: list[str], label: str) -> list[str]:
        return next(line for line in lines if line.startswith(f"| {label} |")).split(" | ")

    merged = docs.headline("results/cpu")
    dense, fpgm = row(merged, "dense ResNet-18"), row(merged, "FPGM 50 %, one-shot")
    assert dense[1] == fpgm[1] == "2"  # n: seed 0 and seed 1
    assert dense[2] == f"{100 * (alone['dense ResNet-18']['accuracy'] - 0.005):.2f} ± 0.71 %"  # 1 pt apart
    # Δ paired with each seed's own dense model: seed 1's is seed 0's less 1 pt (2 pt less accurate, its dense 1 pt).
    assert fpgm[3] == f"{100 * (alone['FPGM 50 %, one-shot']['delta'] - 0.005):+.2f} ± 0.71 pt"
    assert "0: Intel Xeon Processor [amx_int8]; 1: AMD EPYC 9B14 [avx512_vnni]" in fpgm[-1]
    assert fpgm[5:7] == ["2.45×", "4.16×"] and "Speed-ups as each trial measured them" in merged[0]

    (tmp_path / "results" / "speed" / "amx.json").write_text(json.dumps(_speed_record("amx", 2.0)))
    (tmp_path / "results" / "speed" / "avx2.json").write_text(json.dumps(_speed_record("avx2", 1.5)))
    timed = docs.headline("results/cpu speed=results/speed/avx2.json")
    assert "from one side-by-side run on `CPU of avx2` [avx2]" in timed[0] and "fp32 ONNX Runtime" in timed[0]
    assert row(timed, "dense ResNet-18")[5:7] == ["1.00×", "1.00×"]
    assert row(timed, "FPGM 50 %, gradual")[5:7] == ["1.50×", "1.50×"]  # the FPGM 50 % shape, 1 thread
    assert row(timed, "pipeline, distilled")[5:7] == [f"{1.5 ** 7:.2f}×"] * 2
    tables = docs.speed("results/speed")
    assert tables.count("#### amx") == tables.count("#### avx2") == 1
    assert sum(line.startswith("| FPGM 50 % | 2 | onnxruntime fp32 |") for line in tables) == 2

    (tmp_path / "results" / "speed" / "avx2.json").write_text(json.dumps(_speed_record("avx2", 1.5, quick=True)))
    with pytest.raises(docs.DocsError, match="--quick run"):
        docs.speed("results/speed")


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.name)
def test_every_relative_link_resolves(path):
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.DOTALL)  # code blocks hold commands, not links
    broken = [target for target in LINK.findall(text)
              if "://" not in target and not target.startswith("mailto:") and not (path.parent / target).exists()]
    assert not broken, f"{path.relative_to(ROOT)}: links to missing files {broken}"


def test_readme_is_a_front_door():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 150
    assert "python3 -m pytest -q" in lines  # .ci/run runs exactly this command
    assert {f"docs/{p.name}" for p in DOCUMENTS[1:]} <= set(LINK.findall("\n".join(lines)))


def test_no_committed_file_names_a_machine_path():
    """Records, docs and test fixtures (copied from real NNI runs; their run folders renamed /nni-run, /repo)."""
    files = subprocess.run(["git", "ls-files", "results", "docs", "README.md", "tests/fixtures"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    machine = re.compile(rb"/root/|/home/|/work/|/tmp/")
    found = [f for f in files if f.endswith((".md", ".json", ".sqlite", ".log"))
             and machine.search((ROOT / f).read_bytes())]
    assert not found
