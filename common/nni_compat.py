"""Everything this suite needs to run NNI 3.0 (frozen in 2023, built for torch <= 2.1) on torch 2.14.

Each work-around names the NNI file/line it answers and the torch change behind it, and
`tests/test_nni_compat.py` proves each one: the stock NNI path fails on this torch, ours works.
Import NNI's compression API through this module's helpers, not directly, so there is one place
to delete a work-around once upstream is fixed.
"""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager

import torch
from torch import nn


def _silence_import_noise() -> None:
    # nni/compression/speedup/utils.py:32 registers fx's immutable collections with the private
    # `torch.utils._pytree._register_pytree_node`, deprecated since torch 2.2 and already registered
    # by torch itself: 4 warnings in every trial log, harmless (same flatten/unflatten functions).
    warnings.filterwarnings("ignore", message=r".*_register_pytree_node.*", category=FutureWarning)
    warnings.filterwarnings("ignore", message=r".*is already registered as pytree node.*", category=UserWarning)
    # nnictl (nni/tools/nnictl/nnictl.py:7) and NNI's trial runtime import pkg_resources.
    warnings.filterwarnings("ignore", message=r".*pkg_resources is deprecated.*", category=UserWarning)
    # NNI's jit-based dependency analysis uses torch.jit.trace, deprecated in torch 2.9 but working.
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.trace.*is deprecated.*", category=FutureWarning)


_silence_import_noise()


@contextmanager
def quiet_nni(level: int = logging.WARNING):
    """NNI logs one coloured INFO line per replaced module during speed-up; keep trial logs readable."""
    # mask_conflict.py:426 warns "both dim0 and dim1 masks found" for every pruned residual network:
    # a conv losing output filters *and* input channels is exactly what channel pruning does.
    levels = {"nni": level, "nni.compression.speedup.mask_conflict": logging.ERROR}
    old = {name: logging.getLogger(name).level for name in levels}
    for name, lvl in levels.items():
        logging.getLogger(name).setLevel(lvl)
    try:
        yield
    finally:
        for name, lvl in old.items():
            logging.getLogger(name).setLevel(lvl)


def _speedup_logger() -> logging.Logger:
    # ModelSpeedup forces its default logger to INFO (model_speedup.py:159), one line per node;
    # it accepts a logger argument, so hand it one that keeps warnings only.
    logger = logging.getLogger("nni.compression.speedup.summary")
    logger.setLevel(logging.WARNING)
    return logger


def speedup_model(model: nn.Module, example_input: torch.Tensor, masks: dict) -> nn.Module:
    """Physically remove the channels that `masks` zero out (NNI `ModelSpeedup`), in place.

    NNI's default tracer crashes on torch >= 2.3:
    nni/common/concrete_trace_utils/concrete_tracer.py:943 looks for methods whose qualname starts
    with `_TensorBase` (torch 2.3 renamed `torch._C._TensorBase` to `TensorBase`), so tensor methods
    fall through to l.958 `func.__module__.startswith('_')` with `__module__ = None` →
    AttributeError; past that, its wrapper of `torch.fx.Node.is_impure` takes no argument while
    torch 2.5+ calls `is_impure(impure_random)`.

    Instead of patching a 1,600-line tracer built around private torch internals, we hand
    ModelSpeedup a graph from `torch.fx.symbolic_trace`, torch's own maintained tracer: our models
    are static graphs (no data-dependent control flow), which is exactly what symbolic tracing
    covers, and ModelSpeedup accepts a ready `graph_module` by design. Nothing in NNI is modified.
    """
    from nni.compression.speedup import ModelSpeedup

    was_training = model.training
    model.eval()
    graph_module = torch.fx.symbolic_trace(model)
    # No torch.no_grad() here: ModelSpeedup propagates masks backwards through autograd.
    with quiet_nni():
        ModelSpeedup(model, example_input, masks, graph_module=graph_module, logger=_speedup_logger()).speedup_model()
    model.train(was_training)
    return model


def dependency_aware_config(model: nn.Module, config_list: list[dict], example_input: torch.Tensor) -> list[dict]:
    """Give channels joined by residual additions one dependency group so they are pruned together.

    NNI's jit-based `auto_set_denpendency_group_ids` (sic) does this; without it each conv of a
    residual sum keeps different channels and speed-up cannot remove any of them.
    """
    from nni.compression.utils import auto_set_denpendency_group_ids

    was_training = model.training
    model.eval()
    with quiet_nni(), torch.no_grad():
        config = auto_set_denpendency_group_ids(model, config_list, example_input)
    model.train(was_training)
    return config
