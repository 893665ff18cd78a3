"""`python3 -m common.cli.grid_cost --configs ...` adds to the recorded table instead of replacing it."""

import json

from common.cli.grid_cost import CONFIGS, _merged

QAT, PTQ, PIPELINE = "QAT 8-bit from dense", "PTQ 8-bit from dense", list(CONFIGS)[-1]


def test_a_partial_run_replaces_its_own_rows_and_keeps_the_others(tmp_path):
    path = tmp_path / "grid_cost.json"
    old = [{"config": c, "grid": g, "test_acc": 0.9} for c in (QAT, PTQ) for g in ("reduced", "full")]
    path.write_text(json.dumps({"command": "first", "rows": old}))
    new = [{"config": c, "grid": g, "test_acc": 0.5} for c in (PIPELINE, QAT) for g in ("full", "reduced")]
    rows, commands = _merged(path, new, "second")
    assert [(r["config"], r["grid"], r["test_acc"]) for r in rows] == [
        (QAT, "reduced", 0.5), (QAT, "full", 0.5), (PTQ, "reduced", 0.9), (PTQ, "full", 0.9),
        (PIPELINE, "reduced", 0.5), (PIPELINE, "full", 0.5)]
    assert commands == ["first", "second"]
    assert _merged(tmp_path / "none.json", new[:1], "only") == (new[:1], ["only"])
