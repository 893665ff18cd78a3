"""The quantizer and pruner registries: each record is what the code does with its algorithm."""

import torch

from common.models import build_model
from common.quantization import ALGORITHMS, QUANTIZERS, config_list

TINY = {"blocks": [1], "widths": [8], "activation": "relu", "kernel_size": 3}


def test_every_quantizer_record_names_an_nni_class_and_configures_every_layer():
    model = build_model(TINY, 10)
    layers = [n for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert ALGORITHMS == tuple(QUANTIZERS) == ("ptq", "qat", "lsq", "dorefa")
    for name, q in QUANTIZERS.items():
        assert isinstance(q.nni_class(), type) and q.name == name
        configs = config_list(model, name, 8)
        weights = [c["op_names"][0] for c in configs if c["target_names"] == ["weight"]]
        assert weights == layers
        activations = {c["target_names"][0] for c in configs if c["target_names"] != ["weight"]}
        # DoReFa quantizes every layer's input; the others each activation once, at its producer.
        assert activations == ({"_input_"} if q.layer_inputs_only else {"_input_", "_output_"})


def test_records_say_what_trains_and_how_activations_are_signed():
    assert [n for n, q in QUANTIZERS.items() if not q.trains] == ["ptq"]
    assert QUANTIZERS["lsq"].activation(True)["quant_dtype"] == "int8"  # LSQ: zero point fixed at 0
    assert QUANTIZERS["qat"].activation(True)["quant_dtype"] == "uint8"  # affine: a zero point instead
    assert QUANTIZERS["dorefa"].weight_grid_factor == 2.0 and "granularity" not in QUANTIZERS["dorefa"].weight(8)
