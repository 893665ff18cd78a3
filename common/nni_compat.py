"""Everything this suite needs to run NNI 3.0 (frozen in 2023, built for torch <= 2.1) on torch 2.14.

Each work-around names the NNI file/line it answers and the torch change behind it, and
`tests/test_nni_compat.py` proves each one: the stock NNI path fails on this torch, ours works.
Import NNI's compression API through this module's helpers, not directly, so there is one place
to delete a work-around once upstream is fixed. Importing this module changes nothing in the process;
a trial calls `quiet()` once when it starts (common.trial.run_main does).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import logging
import os
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

# torch is imported where it is used: NNI's dispatcher loads this module's tuners (below) and must connect to the
# manager within 10 s, so it should not pay for torch's import.
if TYPE_CHECKING:
    import torch
    from torch import nn


def quiet() -> None:
    """Filter the warnings NNI 3.0 prints on this torch out of trial logs; call before nni is imported.

    Idempotent: `warnings.filterwarnings` replaces an identical filter instead of adding a second one.
    """
    # nni/compression/speedup/utils.py:32 registers fx's immutable collections with the private
    # `torch.utils._pytree._register_pytree_node`, deprecated since torch 2.2 and already registered
    # by torch itself: 4 warnings in every trial log, harmless (same flatten/unflatten functions).
    warnings.filterwarnings("ignore", message=r".*_register_pytree_node.*", category=FutureWarning)
    warnings.filterwarnings("ignore", message=r".*is already registered as pytree node.*", category=UserWarning)
    # nnictl (nni/tools/nnictl/nnictl.py:7) and NNI's trial runtime import pkg_resources.
    warnings.filterwarnings("ignore", message=r".*pkg_resources is deprecated.*", category=UserWarning)
    # NNI's jit-based dependency analysis uses torch.jit.trace, deprecated in torch 2.9 but working.
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.trace.*is deprecated.*", category=FutureWarning)


@contextmanager
def quiet_loggers(levels: Mapping[str, int]) -> Iterator[None]:
    """Set the named loggers to these levels for the duration (NNI trials log the root logger at INFO)."""
    old = {name: logging.getLogger(name).level for name in levels}
    for name, lvl in levels.items():
        logging.getLogger(name).setLevel(lvl)
    try:
        yield
    finally:
        for name, lvl in old.items():
            logging.getLogger(name).setLevel(lvl)


def quiet_nni(level: int = logging.WARNING) -> contextlib.AbstractContextManager[None]:
    """NNI logs one coloured INFO line per replaced module during speed-up; keep trial logs readable."""
    # mask_conflict.py:426 warns "both dim0 and dim1 masks found" for every pruned residual network:
    # a conv losing output filters *and* input channels is exactly what channel pruning does.
    return quiet_loggers({"nni": level, "nni.compression.speedup.mask_conflict": logging.ERROR})


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
    import torch
    from nni.compression.speedup import ModelSpeedup

    was_training = model.training
    model.eval()
    graph_module = torch.fx.symbolic_trace(model)
    # No torch.no_grad() here: ModelSpeedup propagates masks backwards through autograd.
    # mask_conflict.py:231 has a leftover debug `print(prune_axis, prune_type)` ("0 Filter" in every trial log);
    # ModelSpeedup reports through its logger, so its stdout carries nothing else.
    with quiet_nni(), contextlib.redirect_stdout(io.StringIO()):
        ModelSpeedup(model, example_input, masks, graph_module=graph_module, logger=_speedup_logger()).speedup_model()
    model.train(was_training)
    return model


def dependency_aware_config(model: nn.Module, config_list: list[dict], example_input: torch.Tensor) -> list[dict]:
    """Give channels joined by residual additions one dependency group so they are pruned together.

    NNI's jit-based `auto_set_denpendency_group_ids` (sic) does this; without it each conv of a
    residual sum keeps different channels and speed-up cannot remove any of them.
    """
    import torch
    from nni.compression.utils import auto_set_denpendency_group_ids

    was_training = model.training
    model.eval()
    with quiet_nni(), torch.no_grad():
        config = auto_set_denpendency_group_ids(model, config_list, example_input)
    model.train(was_training)
    return config


# ------------------------------------------------------------------------------------------------
# Quantization fixes (used by common/quantization.py; each one proven in tests/test_nni_compat.py)


def _safe_dorefa_gradient_hook(self, target_space) -> None:
    """DoReFa's gradient quantization without its 0/0.

    nni/compression/quantization/dorefa_quantizer.py:117 (`_quant_dequant_gradient_hook`) scales each
    sample's output gradient by `1 / (2 * max|grad|)`. A sample whose gradient is all zero (a dead
    ReLU region, or a block whose last BatchNorm weight is 0, as ResNet's zero-init of `bn2` gives)
    makes that 0/0 = NaN, the backward hook returns NaN, and the weights turn NaN within a step. Same
    quantize-dequantize as NNI; a sample with max |grad| = 0 keeps its (exactly zero) gradient.
    """
    import torch
    from nni.compression.quantization.dorefa_quantizer import init_scale_zp

    bits = target_space.quant_bits

    def quant_dequant_gradient(module: nn.Module, grad_output):
        new_grad_output = []
        for g_o in grad_output:
            if g_o is None:
                new_grad_output.append(g_o)
                continue
            tracked_max = torch.tensor(1.0 + 0.5 / (2**bits - 1), device=g_o.device)
            tracked_min = torch.tensor(0 - 0.5 / (2**bits - 1), device=g_o.device)
            scale, zero_point = init_scale_zp(tracked_max, tracked_min, target_space.qmax, target_space.qmin, "affine")
            dims = list(range(1, g_o.dim()))
            max_grad = torch.amax(g_o.detach().abs(), dim=dims, keepdim=True) if dims else g_o.detach().abs()
            nonzero = max_grad > 0
            safe_max = torch.where(nonzero, max_grad, torch.ones_like(max_grad))
            noise = torch.zeros_like(max_grad).uniform_(-0.5, 0.5) / (2**bits - 1)
            q_grad = g_o / (2 * safe_max) + 0.5 + noise
            quantized = torch.round(torch.clamp(zero_point + q_grad / scale, target_space.qmin, target_space.qmax))
            dequantized = (quantized - zero_point) * scale
            new_grad_output.append(torch.where(nonzero, (dequantized - 0.5) * 2 * safe_max, torch.zeros_like(g_o)))
        return tuple(new_grad_output)

    target_space._wrapper.module.register_full_backward_pre_hook(quant_dequant_gradient)


@functools.cache  # built on first use (NNI's import is slow), then the same class for every caller
def safe_dorefa_quantizer_class() -> type:
    """NNI's DoReFaQuantizer with the NaN-safe gradient hook above (a subclass: NNI itself is untouched)."""
    from nni.compression.quantization import DoReFaQuantizer

    return type("DoReFaQuantizer", (DoReFaQuantizer,),
                {"_quant_dequant_gradient_hook": _safe_dorefa_gradient_hook,
                 "__doc__": "DoReFaQuantizer whose gradient hook survives all-zero gradients."})


# ------------------------------------------------------------------------------------------------
# Multi-fidelity advisors: NNI's Hyperband and BOHB with their string parameter ids, resumable.
# Use from an experiment config (NNI appends codeDirectory to sys.path and imports className):
#   tuner:
#     codeDirectory: ../..                    # the repository root, relative to the config file
#     className: common.nni_compat.Hyperband  # or common.nni_compat.BOHB (needs ConfigSpace, statsmodels)
#     classArgs: {optimize_mode: maximize, R: 9, eta: 3}


class _StringIdRecovery:
    """Resume bookkeeping that accepts Hyperband/BOHB parameter ids ("<bracket>_<round>_<n>" strings).

    nni/recoverable.py:49 `is_created_in_previous_exp` does `param_id <= self.recovered_max_param_id`
    (an int): the first metric a trial reports raises TypeError in the dispatcher's worker thread
    (hyperband_advisor.py:544 `handle_report_metric_data`), the dispatcher stops, and the experiment
    stays RUNNING forever. NNI's recovery only tracks int ids (recoverable.py:38 skips the others), so
    here a string id is "previous" exactly when `nnictl resume` handed it back as a trial that was still
    running (nnimanager addRecoveredTrialJob): its late results are ignored, as NNI ignores recovered
    int ids. The advisor's id counter then continues after those ids, so a new id never repeats one.
    """

    def __init__(self, *args, **kwargs) -> None:
        self._recovered_str_ids: set[str] = set()
        super().__init__(*args, **kwargs)

    def is_created_in_previous_exp(self, param_id: int | str | None) -> bool:
        if isinstance(param_id, str):
            return param_id in self._recovered_str_ids
        return super().is_created_in_previous_exp(param_id)

    def recover_parameter_id(self, data) -> int:
        import nni

        for record in data if isinstance(data, list) else [data]:
            pid = (nni.load(record) if isinstance(record, str) else record)["parameter_id"]
            if isinstance(pid, str):
                self._recovered_str_ids.add(pid)
        return super().recover_parameter_id(data)

    def handle_add_customized_trial(self, data) -> None:
        import sys

        super().handle_add_customized_trial(data)  # sets the module's `_next_parameter_id` from int ids only
        owner = sys.modules[self._nni_module]
        counters = [int(pid.rsplit("_", 1)[1]) for pid in self._recovered_str_ids if pid.rsplit("_", 1)[-1].isdigit()]
        if counters:
            owner._next_parameter_id = max(owner._next_parameter_id, max(counters) + 1)


_ADVISORS = {
    "Hyperband": "nni.algorithms.hpo.hyperband_advisor",
    "BOHB": "nni.algorithms.hpo.bohb_advisor.bohb_advisor",
}


@functools.cache  # built once: `common.nni_compat.Hyperband is common.nni_compat.Hyperband`
def _advisor_class(name: str) -> type:
    import importlib

    module = _ADVISORS[name]
    base = getattr(importlib.import_module(module), name)
    return type(name, (_StringIdRecovery, base), {
        "__module__": __name__, "__qualname__": name, "_nni_module": module,
        "__doc__": f"NNI's {name} advisor, whose string parameter ids no longer crash it (see _StringIdRecovery).",
    })


# ------------------------------------------------------------------------------------------------
# Tuners that survive a parameter id they no longer hold (issue #27). Use from an experiment config:
#   tuner:
#     codeDirectory: ../..                 # the repository root
#     className: common.nni_compat.TPE     # or GridSearch, Evolution: NNI's tuner, same classArgs
#
# A trial that dies before it asks for its parameters (killed at start, an import error, a dropped connection)
# leaves them in the manager's shared queue (training_service/v3/compat.js `parameters`), and the next trial takes
# them (NNI #5693, #5726). The dead trial's end has already reached the tuner, so the later result arrives for
# an id the tuner has forgotten: stock TPE raises KeyError (tpe_tuner.py:197), Evolution RuntimeError
# (evolution_tuner.py:287), the dispatcher thread dies ("Dispatcher exiting") and the experiment stays RUNNING
# with no trial ever started again.

_TUNERS = {  # the name the configs use (NNI's builtin name) -> NNI's class
    "TPE": "nni.algorithms.hpo.tpe_tuner.TpeTuner",
    "GridSearch": "nni.algorithms.hpo.gridsearch_tuner.GridSearchTuner",
    "Evolution": "nni.algorithms.hpo.evolution_tuner.EvolutionTuner",
    "Random": "nni.algorithms.hpo.random_tuner.RandomTuner",
}


def _tuner_warning(message: str, *args) -> None:
    # An nni.* logger: NNI's dispatcher writes those to dispatcher.log. Looked up at use, so importing this module
    # registers no logger (tests/test_nni_compat.py checks that importing it changes nothing).
    logging.getLogger("nni.tuner.compat").warning(message, *args)


@dataclasses.dataclass
class _IdBook:
    """What a tuner has handed out and heard back, by parameter id."""

    issued: dict = dataclasses.field(default_factory=dict)  # id -> parameters
    ended: set = dataclasses.field(default_factory=set)
    resulted: set = dataclasses.field(default_factory=set)
    unrun: list = dataclasses.field(default_factory=list)  # ids whose trial succeeded: maybe without their result


class ToleratesStaleIds:
    """Mixin for an NNI `Tuner` (first base): a result or an end for an unknown, already-ended or repeated
    parameter id is logged to dispatcher.log and absorbed instead of raised. A late result is still a real
    measurement of the parameters NNI sent with it, so it reaches the tuner as imported data (`import_data`,
    NNI's way to add results it did not ask for). Grid searches (`reissue_unrun`) hand out again a point whose
    trial succeeded without reporting it (it ran another trial's parameters), so no grid point is lost silently
    while the trial budget lasts."""

    reissue_unrun = False

    @property
    def _ids(self) -> _IdBook:  # created on first use: tuners' own __init__ need not call this mixin's
        return self.__dict__.setdefault("_id_book", _IdBook())

    def generate_parameters(self, parameter_id: int, **kwargs):
        params = self._next_unrun(parameter_id)
        if params is None:
            params = super().generate_parameters(parameter_id, **kwargs)
        self._ids.issued[parameter_id] = params
        return params

    def _next_unrun(self, parameter_id: int) -> dict | None:
        # Decided here, not at the trial's end: NNI delivers ends and results on two threads (msg_dispatcher_base
        # enqueue_command), but the request for a new trial follows the ended trial's result on the same queue.
        book = self._ids
        while book.unrun:
            ended = book.unrun.pop(0)
            if ended not in book.resulted:
                _tuner_warning("parameter id %s: handing out again the parameters of id %s, whose trial "
                                     "succeeded without reporting them (it ran another trial's)", parameter_id, ended)
                return book.issued[ended]
        return None

    def receive_trial_result(self, parameter_id: int, parameters: dict, value, **kwargs) -> None:
        book = self._ids
        if parameter_id in book.resulted:
            _tuner_warning("parameter id %s: a second result %s ignored", parameter_id, value)
            return
        book.resulted.add(parameter_id)
        if parameter_id in book.ended:
            _tuner_warning("parameter id %s: result after its trial ended (NNI gave these parameters to a "
                                 "later trial, #5693); taken as imported data", parameter_id)
            self._import(parameters, value)
        elif parameter_id in book.issued:
            super().receive_trial_result(parameter_id, parameters, value, **kwargs)
        else:  # not through generate_parameters (Evolution sends some itself): the tuner may know it, or not
            try:
                super().receive_trial_result(parameter_id, parameters, value, **kwargs)
            except Exception as err:  # noqa: BLE001 - stock tuners raise on ids they do not hold
                _tuner_warning("parameter id %s: unknown to the tuner (%s: %s); taken as imported data",
                                     parameter_id, type(err).__name__, err)
                self._import(parameters, value)

    def trial_end(self, parameter_id: int, success: bool, **kwargs) -> None:
        book = self._ids
        if parameter_id in book.ended:
            _tuner_warning("parameter id %s: a second trial end ignored", parameter_id)
            return
        book.ended.add(parameter_id)
        if parameter_id in book.issued:
            if self.reissue_unrun and success:
                book.unrun.append(parameter_id)
            super().trial_end(parameter_id, success, **kwargs)
            return
        try:
            super().trial_end(parameter_id, success, **kwargs)
        except Exception as err:  # noqa: BLE001 - as above
            _tuner_warning("parameter id %s: end unknown to the tuner (%s: %s), ignored",
                                 parameter_id, type(err).__name__, err)

    def _import(self, parameters: dict, value) -> None:
        try:
            self.import_data([{"parameter": parameters, "value": value}])
        except Exception as err:  # noqa: BLE001 - a tuner that cannot import loses one observation, not the run
            _tuner_warning("the tuner could not import %s (%s: %s); dropped", parameters, type(err).__name__, err)


def tolerates_stale_ids(tuner: type, name: str | None = None, module: str | None = None) -> type:
    """`tuner` (an NNI Tuner class) wrapped by ToleratesStaleIds; as a class decorator it keeps the name."""
    name = name or tuner.__name__
    return type(name, (ToleratesStaleIds, tuner), {
        "__module__": module or tuner.__module__, "__qualname__": name, "reissue_unrun": name == "GridSearch",
        "__doc__": f"{tuner.__doc__}\n\nA parameter id it has forgotten is logged, not fatal (ToleratesStaleIds).",
    })


@functools.cache  # built once: `common.nni_compat.TPE is common.nni_compat.TPE`
def _tuner_class(name: str) -> type:
    import importlib

    module, cls = _TUNERS[name].rsplit(".", 1)
    return tolerates_stale_ids(getattr(importlib.import_module(module), cls), name, __name__)


def __getattr__(name: str) -> type:
    # PEP 562: the tuners and advisors are built on first access, so the trials that import this module do
    # not pay for NNI's HPO stack (scipy, pandas: seconds on a busy CPU).
    if name in _ADVISORS:
        return _advisor_class(name)
    if name in _TUNERS:
        return _tuner_class(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ------------------------------------------------------------------------------------------------
# The trial's command channel, surviving a reset connection (issue #27). NNI's HttpChannel.send
# (nni/runtime/command_channel/http.py) is one `requests.put` without retry: a "Connection reset by peer" while a
# trial asks for its parameters kills the trial 3 s after it started, and then the next trial takes its parameters.
#
# Whether a reset request was received: the manager's PUT handler (nni_node/common/command_channel/http.js
# handlePut) acts on the body before it answers, so a reset while reading the answer (ChunkedEncodingError) means
# it was; a reset while sending means it was not. Asking twice is never safe: each request takes the next
# parameter set from the manager's shared queue (training_service/v3/compat.js), which belongs to another trial.
# So after a reset we first wait for the answer, and ask again only after `silence_s` without one. A metric is
# looked up in the manager's REST API (metric-data/<trial>) before it is sent again, so it is not counted twice.

def _transient_errors() -> tuple[type[Exception], ...]:
    import requests

    return (requests.ConnectionError, requests.exceptions.ChunkedEncodingError)


def _channel_print(message: str) -> None:
    print(f"nni channel: {message}", flush=True)  # trial.log keeps a trial's stdout (as PRINT lines)


class ChannelError(RuntimeError):
    """The trial could not reach the NNI manager after its retries."""


@functools.cache
def _resilient_channel_class() -> type:
    import time

    import requests
    from nni.runtime.trial_command_channel.v3 import TrialCommandChannelV3

    class ResilientTrialChannel(TrialCommandChannelV3):
        """NNI's v3 trial channel with bounded retries (see above); everything else is NNI's."""

        def __init__(self, url: str, retries: int = 5, backoff_s: float = 1.0, silence_s: float = 20.0,
                     answer_s: float = 600.0) -> None:
            super().__init__(url)
            self.url, self.retries, self.backoff_s = url, retries, backoff_s
            self.silence_s, self.answer_s = silence_s, answer_s

        def receive_parameter(self):
            import nni

            for attempt in range(1, self.retries + 2):
                try:
                    self._channel.send({"type": "request_parameter"})
                    answer = self._receive(self.answer_s)
                except _transient_errors() as err:
                    _channel_print(f"asking for parameters (attempt {attempt}): {type(err).__name__}: {err}; "
                                   f"waiting up to {self.silence_s:.0f} s for the answer before asking again")
                    answer = self._receive(self.silence_s)
                    if answer is None:
                        time.sleep(self.backoff_s * 2 ** (attempt - 1))
                        continue
                if answer == "closed":
                    return None  # NNI's own behaviour: the channel is closed, the trial gets no parameters
                if answer is None:
                    raise ChannelError(f"no parameters from the NNI manager at {self.url} in {self.answer_s:.0f} s")
                return nni.load(answer["parameter"])
            raise ChannelError(f"could not ask the NNI manager at {self.url} for parameters: {self.retries + 1} "
                               "connections reset")

        def _receive(self, seconds: float):
            """The next command, "closed" when the manager closed the channel, None after `seconds` of nothing."""
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                try:
                    r = requests.get(self.url, timeout=max(5.0, seconds))
                except _transient_errors() + (requests.Timeout,) as err:
                    _channel_print(f"waiting for a command: {type(err).__name__}: {err}; retrying")
                    time.sleep(self.backoff_s)
                    continue
                if r.status_code == 200:
                    return r.json()
                if r.status_code == 410:
                    return "closed"
                if r.status_code != 408:  # 408: nothing within the manager's poll interval (1 s), ask again
                    raise ChannelError(f"NNI manager at {self.url} answered {r.status_code}: {r.text[:200]}")
            return None

        def send_metric(self, type, parameter_id, trial_job_id, sequence, value) -> None:  # noqa: A002 - NNI's name
            for attempt in range(1, self.retries + 2):
                try:
                    return super().send_metric(type, parameter_id, trial_job_id, sequence, value)
                except _transient_errors() as err:
                    time.sleep(self.backoff_s * 2 ** (attempt - 1))
                    if self._manager_has(trial_job_id, type, sequence):
                        _channel_print(f"{type} metric {sequence}: {err.__class__.__name__} on sending, but the "
                                       "manager has it")
                        return None
                    _channel_print(f"{type} metric {sequence} (attempt {attempt}): {err.__class__.__name__}: "
                                   f"{err}; sending again")
            raise ChannelError(f"could not send the {type} metric to the NNI manager at {self.url}: "
                               f"{self.retries + 1} connections reset")

        def _manager_has(self, trial_job_id: str, type: str, sequence: int) -> bool:  # noqa: A002
            """Whether the manager stored this metric (its REST API shares the channel's host and port)."""
            from urllib.parse import urlsplit

            parts = urlsplit(self.url)
            try:
                r = requests.get(f"{parts.scheme}://{parts.netloc}/api/v1/nni/metric-data/{trial_job_id}", timeout=10)
                rows = r.json() if r.status_code == 200 else []
            except (requests.RequestException, ValueError):
                return False  # not knowable (a remote trial's channel is not the manager): send again
            return any(m.get("type") == type and m.get("sequence") == sequence for m in rows)

    return ResilientTrialChannel


def resilient_trial_channel(**options) -> None:
    """Make NNI's trial API (get_next_parameter, report_*_result) use the retrying channel above. Call before the
    first of them; outside an NNI v3 trial (no HTTP command channel) it changes nothing."""
    url = os.environ.get("NNI_TRIAL_COMMAND_CHANNEL", "")
    if not url.startswith("http://"):
        return
    from nni.runtime.trial_command_channel import set_default_trial_command_channel

    set_default_trial_command_channel(_resilient_channel_class()(url, **options))


# ------------------------------------------------------------------------------------------------
# A dead dispatcher (issue #27). When the tuner raises, NNI's dispatcher thread logs the traceback, the dispatcher
# process exits ("Dispatcher terminiated", sic), and the manager keeps the experiment RUNNING with no trial ever
# started again, until maxExperimentDuration: nothing in the web UI says so. This reads it from dispatcher.log.


def dispatcher_failure(experiment_dir: str | os.PathLike) -> str | None:
    """Why the dispatcher (tuner process) of the experiment in `experiment_dir` (NNI's `<logDir>/<id>`) has
    exited since it last started, from its dispatcher.log: the exception it died of, in one line; None while it
    runs. Only meaningful while the experiment has not ended (a stopped experiment's dispatcher exits too)."""
    from pathlib import Path

    try:
        text = (Path(experiment_dir) / "log" / "dispatcher.log").read_text(errors="replace")
    except OSError:
        return None
    run = text[text.rfind("Dispatcher started"):]  # `nnictl resume` appends a new run to the same log
    if "Dispatcher exiting" not in run and "Dispatcher terminiated" not in run:
        return None
    lines = run.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call last)")]
    if starts:
        after = [line for line in lines[starts[-1] + 1:] if line and not line[0].isspace()]
        if after and not after[0].startswith("["):
            return after[0]  # the exception line, e.g. "KeyError: 0"
    errors = [line for line in lines if " ERROR (" in line]
    return errors[-1].split(") ", 1)[-1] if errors else "it exited without an error in dispatcher.log"
