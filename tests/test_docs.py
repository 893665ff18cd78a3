"""The README and docs/: generated tables equal what `python3 -m common.cli.docs` writes from the committed
records, every relative link resolves, no committed file names a machine path, and the README stays short."""

import json
import re
import subprocess

import pytest

from common.cli import docs
from tests.nnictl_utils import ROOT

DOCUMENTS = docs.documents(ROOT)
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_committed_docs_are_what_the_generator_writes():
    assert not docs.stale(DOCUMENTS), "regenerate: python3 -m common.cli.docs --write"


def test_the_generator_notices_a_table_typed_by_hand(tmp_path):
    readme = (ROOT / "README.md").read_text()
    assert "<!-- generated: headline results/cpu -->" in readme
    typed = tmp_path / "README.md"
    typed.write_text(readme.replace("| dense ResNet-18 |", "| dense ResNet-18 (typed) |", 1))
    assert docs.stale([typed]) == [typed]
    with pytest.raises(docs.DocsError, match="unknown generated block 'nonsense'"):
        docs.render("<!-- generated: nonsense -->\n<!-- end generated -->")
    with pytest.raises(docs.DocsError, match="no file results/nowhere/report.json"):
        docs.render("<!-- generated: headline results/nowhere -->\n<!-- end generated -->")


def test_readme_headline_has_every_recorded_configuration_with_its_seeds():
    recorded = json.loads((ROOT / "results" / "cpu" / "report.json").read_text())
    readme = (ROOT / "README.md").read_text()
    assert recorded["headline"], "results/cpu/report.json has no headline rows: rebuild it with common.cli.report"
    for row in recorded["headline"]:
        line = next(line for line in readme.splitlines() if line.startswith(f"| {row['model']} |"))
        assert line.split(" | ")[1] == str(row["seeds"])
    assert recorded["machines"][0]["cpu_model"] in readme  # the CPU the numbers came from is named


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
    files = subprocess.run(["git", "ls-files", "results", "docs", "README.md"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    machine = re.compile(r"/root/|/home/|/work/|/tmp/")
    found = [f for f in files if f.endswith((".md", ".json")) and machine.search((ROOT / f).read_text())]
    assert not found
