"""The pruning and quantization search spaces are rendered from the registries (common/spaces.py)."""

import pytest

from common import quantization, spaces
from common.cli.spaces import EXPERIMENTS, main
from common.pruning import REGISTRY
from common.quantization import QUANTIZERS


@pytest.mark.parametrize("name", list(spaces.SPACES))
def test_committed_search_space_is_the_rendered_one(name):
    text = (EXPERIMENTS / name).read_text()
    assert text == spaces.render(spaces.SPACES[name]()), "regenerate: python3 -m common.cli.spaces render --write"


def test_full_spaces_offer_every_registered_pruner_and_quantizer(monkeypatch):
    assert spaces.pruning_space()["pruner"]["_value"] == list(REGISTRY)
    assert spaces.quant_space()["algorithm"]["_value"] == list(QUANTIZERS)
    # A new record appears in the full spaces without editing them.
    monkeypatch.setitem(REGISTRY, "taylor", REGISTRY["l1"])
    assert spaces.pruning_space()["pruner"]["_value"][-1] == "taylor"


def test_a_narrowed_space_naming_an_unregistered_algorithm_fails_to_render(monkeypatch):
    # A copy without LSQ (deleting and restoring the key would move it to the end of the registry).
    monkeypatch.setattr(quantization, "QUANTIZERS", {k: v for k, v in QUANTIZERS.items() if k != "lsq"})
    with pytest.raises(KeyError, match="quantizer 'lsq' is not in common.quantization.QUANTIZERS"):
        spaces.quant_seeds_space()
    with pytest.raises(KeyError, match="pruner 'nope' is not in common.pruning.REGISTRY"):
        spaces.pruners("nope")


def test_render_prints_every_file(capsys):
    assert main(["render"]) == 0
    out = capsys.readouterr().out
    assert all(f"# experiments/{name}\n" in out for name in spaces.SPACES)
