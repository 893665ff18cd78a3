"""Each work-around in common/nni_compat.py: the stock NNI path fails on this torch, ours works.

If a "stock path fails" test starts failing, NNI or torch fixed the problem upstream and the
work-around can go.
"""

import copy
import json
import time

import pytest
import torch

from common.models import build_model
from common.nni_compat import dependency_aware_config, speedup_model

SMALL = {"blocks": [1, 1], "widths": [8, 16]}


def half_masks(model):
    from nni.compression.pruning import L1NormPruner

    config = dependency_aware_config(model, [{"op_types": ["Conv2d"], "sparse_ratio": 0.5}], torch.randn(1, 3, 32, 32))
    pruner = L1NormPruner(model, config)
    _, masks = pruner.compress()
    pruner.unwrap_model()
    return masks


def test_stock_model_speedup_crashes_on_this_torch():
    from nni.compression.speedup import ModelSpeedup

    model = build_model(SMALL).eval()
    masks = half_masks(model)
    with pytest.raises(AttributeError):  # concrete_tracer.py:958 `None.startswith` (torch 2.3 _TensorBase rename)
        ModelSpeedup(model, torch.randn(1, 3, 32, 32), masks).speedup_model()


def test_speedup_model_with_fx_graph_shrinks_and_keeps_outputs(capsys):
    model = build_model(SMALL).eval()
    masks = half_masks(model)
    x = torch.randn(4, 3, 32, 32)
    # Reference: the masked dense model (masks applied by hand). With fresh BN statistics (zero shift)
    # a masked channel is exactly zero downstream, so speed-up must compute the same function.
    masked = copy.deepcopy(model)
    for name, target_masks in masks.items():
        module = masked.get_submodule(name)
        for attr, mask in target_masks.items():
            if getattr(module, attr) is not None:  # NNI also returns masks for absent conv biases
                getattr(module, attr).data.mul_(mask)
    with torch.no_grad():
        expected = masked(x)
    speedup_model(model, torch.randn(1, 3, 32, 32), masks)
    assert capsys.readouterr().out == ""  # NNI's leftover debug print ("0 Filter") stays out of trial logs
    assert model.layer1[0].conv1.out_channels == 4 and model.layer2[0].conv2.out_channels == 8
    assert model.fc.in_features == 8
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, atol=1e-4, rtol=1e-4)


def test_dependency_groups_join_residual_convs():
    model = build_model({"blocks": [2, 1], "widths": [8, 16]})
    config = dependency_aware_config(model, [{"op_types": ["Conv2d"], "sparse_ratio": 0.5}], torch.randn(1, 3, 32, 32))
    group = {c["op_names"][0]: c.get("dependency_group_id") for c in config}
    # stem, block outputs of stage 1 are all summed into one residual stream: one group
    assert group["conv1"] == group["layer1.0.conv2"] == group["layer1.1.conv2"]
    assert group["layer2.0.conv2"] == group["layer2.0.downsample.0"]
    assert group["layer1.0.conv1"] != group["conv1"]  # inner convs are free


# ------------------------------------------------------------------------------------------------
# Quieting NNI: an explicit call, never an import side effect

_IMPORT_PROBE = """
import logging, warnings
import torch  # torch's own import may touch both; only ours is under test
def state():
    loggers = logging.Logger.manager.loggerDict.items()
    return list(warnings.filters), {n: lg.level for n, lg in loggers if isinstance(lg, logging.Logger)}
before = state()
import common.nni_compat
after = state()
assert after == before, (before, after)
common.nni_compat.quiet()
assert list(warnings.filters) != before[0]  # the probe sees filters when they are installed
"""


def test_importing_nni_compat_changes_no_warning_filter_or_logger_level():
    import subprocess
    import sys

    from tests.nnictl_utils import ROOT

    proc = subprocess.run([sys.executable, "-c", _IMPORT_PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_run_main_quiets_nni_before_the_trial_runs():
    import warnings

    from common import trial

    def is_filtered(message: str, category: type[Warning]) -> bool:
        with warnings.catch_warnings(record=True) as caught:
            warnings.warn(message, category, stacklevel=1)
        return not caught

    pytree = "`torch.utils._pytree._register_pytree_node` is deprecated"
    seen = []
    with warnings.catch_warnings():  # restores the filters run_main installs
        warnings.simplefilter("always")
        trial.run_main(lambda: seen.append(is_filtered(pytree, FutureWarning)))
    assert seen == [True]


def test_quiet_loggers_restore_the_levels_they_found_even_on_error():
    import logging

    from common.nni_compat import quiet_loggers, quiet_nni

    nni, conflict = logging.getLogger("nni"), logging.getLogger("nni.compression.speedup.mask_conflict")
    exporter = logging.getLogger("onnxscript")
    before = nni.level, conflict.level, exporter.level
    nni.setLevel(logging.DEBUG)
    try:
        with pytest.raises(KeyError), quiet_nni():
            assert (nni.level, conflict.level) == (logging.WARNING, logging.ERROR)
            assert not nni.isEnabledFor(logging.INFO)
            raise KeyError("a failing speed-up")
        assert (nni.level, conflict.level) == (logging.DEBUG, before[1])
        with quiet_loggers({"onnxscript": logging.CRITICAL}):
            assert exporter.level == logging.CRITICAL
        assert exporter.level == before[2]
    finally:
        nni.setLevel(before[0])


# ------------------------------------------------------------------------------------------------
# Quantization fixes


def _dorefa_conv_grad(quantizer_cls, upstream: torch.Tensor) -> torch.Tensor:
    """Weight gradient of a DoReFa-wrapped conv when the gradient arriving at its output is `upstream`."""
    import nni
    from nni.compression import TorchEvaluator

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1))
    optimizer = nni.trace(torch.optim.SGD)(model.parameters(), lr=0.1)
    evaluator = TorchEvaluator(lambda *a, **k: None, optimizer, lambda batch, m: m(batch).sum())
    config = [{"op_names": ["0"], "target_names": ["weight"], "quant_dtype": "int4", "quant_scheme": "affine"}]
    quantizer = quantizer_cls(model, config, evaluator)
    quantizer.register_output_backward_hook()  # what compress() does before training
    out = model(torch.randn(2, 3, 8, 8))
    out.backward(upstream.expand_as(out))
    return quantizer._module_wrappers["0"].weight.grad


def test_stock_dorefa_gradient_hook_turns_zero_gradients_into_nan():
    from nni.compression.quantization import DoReFaQuantizer

    # dorefa_quantizer.py:117 divides each sample's gradient by its max |gradient|: 0/0 for a zero one
    assert torch.isnan(_dorefa_conv_grad(DoReFaQuantizer, torch.zeros(1))).all()


def test_safe_dorefa_hook_keeps_zero_gradients_zero_and_others_unchanged():
    from nni.compression.quantization import DoReFaQuantizer

    from common.nni_compat import safe_dorefa_quantizer_class

    safe = safe_dorefa_quantizer_class()
    assert issubclass(safe, DoReFaQuantizer)
    assert torch.equal(_dorefa_conv_grad(safe, torch.zeros(1)), torch.zeros(4, 3, 3, 3))
    upstream = torch.linspace(-1, 1, 4).view(1, 4, 1, 1)
    # same quantize-dequantize (and same noise draw) as NNI's hook whenever the gradient is not all zero
    torch.testing.assert_close(_dorefa_conv_grad(safe, upstream), _dorefa_conv_grad(DoReFaQuantizer, upstream))


# ------------------------------------------------------------------------------------------------
# Hyperband / BOHB: string parameter ids (nni/recoverable.py:49)

HB_SPACE = {"pruner": {"_type": "choice", "_value": ["l1", "fpgm"]},
            "sparsity": {"_type": "uniform", "_value": [0.2, 0.8]}}


@pytest.fixture
def offline_dispatcher(monkeypatch):
    """Advisors connect to the NNI manager in __init__; NNI's own unit-test channel URL skips that."""
    from nni.runtime import msg_dispatcher_base

    env = msg_dispatcher_base.dispatcher_env_vars._replace(NNI_TUNER_COMMAND_CHANNEL="ws://_unittest_")
    monkeypatch.setattr(msg_dispatcher_base, "dispatcher_env_vars", env)


def _request(advisor, n: int) -> list[dict]:
    """Ask the advisor for n trials; return the NewTrialJob payloads it sends."""
    import nni
    from nni.runtime.tuner_command_channel import CommandType

    sent = []
    advisor.send = lambda command, data: sent.append((command, nni.load(data)))
    advisor.handle_request_trial_jobs(n)
    return [job for command, job in sent if command == CommandType.NewTrialJob]


def _finish(advisor, job: dict, value: float, trial_job_id: str) -> None:
    """What the NNI manager sends when a trial reports its final result and exits."""
    import nni

    advisor.handle_report_metric_data({"parameter_id": job["parameter_id"], "trial_job_id": trial_job_id,
                                       "type": "FINAL", "sequence": 0, "value": nni.dump(value)})
    advisor.handle_trial_end({"trial_job_id": trial_job_id, "event": "SUCCEEDED", "hyper_params": nni.dump(job)})


def test_stock_hyperband_crashes_on_its_own_parameter_ids(offline_dispatcher):
    from nni.algorithms.hpo.hyperband_advisor import Hyperband

    advisor = Hyperband(optimize_mode="maximize", R=3, eta=3)
    advisor.handle_update_search_space(HB_SPACE)
    job = _request(advisor, 1)[0]
    assert isinstance(job["parameter_id"], str)  # "<bracket>_<round>_<n>"
    with pytest.raises(TypeError, match="'<=' not supported"):  # recoverable.py:49
        _finish(advisor, job, 0.5, "T0")


def test_hyperband_promotes_the_best_config_with_a_larger_budget(offline_dispatcher):
    from common.nni_compat import Hyperband

    advisor = Hyperband(optimize_mode="maximize", R=3, eta=3)  # bracket s=1: 3 configs x budget 1, best x 3
    advisor.handle_update_search_space(HB_SPACE)
    first = _request(advisor, 3)
    assert [j["parameters"]["TRIAL_BUDGET"] for j in first] == [1, 1, 1]
    for i, (job, value) in enumerate(zip(first, [0.3, 0.9, 0.5], strict=True)):
        _finish(advisor, job, value, f"T{i}")
    promoted = _request(advisor, 1)
    assert len(promoted) == 1
    assert promoted[0]["parameters"] == {**first[1]["parameters"], "TRIAL_BUDGET": 3}


def test_hyperband_resume_ignores_recovered_ids_and_never_reuses_them(offline_dispatcher):
    import nni

    from common.nni_compat import Hyperband

    advisor = Hyperband(optimize_mode="maximize", R=3, eta=3)
    advisor.handle_update_search_space(HB_SPACE)
    # `nnictl resume` re-sends the trials that were still running when the manager died.
    old = {"parameter_id": "0-1_0_41", "parameter_source": "resumed", "parameters": {"pruner": "l1", "sparsity": 0.5}}
    advisor.handle_add_customized_trial([nni.dump(old)])
    _finish(advisor, old, 0.7, "OLD")  # ignored like a recovered int id, not a KeyError on an unknown bracket
    new_ids = [j["parameter_id"] for j in _request(advisor, 3)]
    assert old["parameter_id"] not in new_ids
    assert all(int(pid.rsplit("_", 1)[1]) > 41 for pid in new_ids)


def test_advisor_loads_the_way_nni_loads_a_custom_tuner(offline_dispatcher):
    """`tuner: {codeDirectory: <repo root>, className: common.nni_compat.Hyperband}` as nni/__main__.py does it."""
    from nni.runtime.msg_dispatcher_base import MsgDispatcherBase
    from nni.tools.package_utils import create_customized_class_instance

    from tests.nnictl_utils import ROOT

    advisor = create_customized_class_instance({"codeDirectory": str(ROOT), "className": "common.nni_compat.Hyperband",
                                                "classArgs": {"optimize_mode": "maximize", "R": 9, "eta": 3}})
    assert isinstance(advisor, MsgDispatcherBase) and advisor.R == 9  # an advisor: NNI runs it as the dispatcher
    with pytest.raises(AttributeError, match="no attribute 'Hyperbnad'"):
        import common.nni_compat as compat

        compat.Hyperbnad  # noqa: B018 - a typo in className must fail loudly


def test_bohb_promotes_the_best_config_too(offline_dispatcher):
    """BOHB shares Hyperband's string ids; needs `pip install "nni[BOHB]"` (ConfigSpace, statsmodels)."""
    pytest.importorskip("ConfigSpace")
    pytest.importorskip("statsmodels")
    from common.nni_compat import BOHB

    advisor = BOHB(optimize_mode="maximize", min_budget=1, max_budget=3, eta=3)
    advisor.send = lambda command, data: None
    advisor.handle_initialize(HB_SPACE)
    first = _request(advisor, 3)
    assert [j["parameters"]["TRIAL_BUDGET"] for j in first] == [1, 1, 1]
    for i, (job, value) in enumerate(zip(first, [0.3, 0.9, 0.5], strict=True)):
        _finish(advisor, job, value, f"T{i}")
    promoted = [j for j in _request(advisor, 1) if j["parameters"]]
    assert promoted[0]["parameters"] == {**first[1]["parameters"], "TRIAL_BUDGET": 3}


# ------------------------------------------------------------------------------------------------
# Tuners and a re-delivered parameter id (issue #27). The chain, as the NNI manager sends it: trial A (form id 0)
# dies before it asks for its parameters, its end reaches the tuner; trial B (form id 1) takes A's parameters from
# the manager's queue and reports them under id 0; B ends under its own id 1. Then the experiment asks for more.

CHAIN_SPACE = {"x": {"_type": "choice", "_value": [0, 1, 2, 3]}}


def _dispatcher(tuner):
    from nni.runtime.msg_dispatcher import MsgDispatcher

    dispatcher = MsgDispatcher("ws://_unittest_", tuner)
    dispatcher.sent = []
    dispatcher.send = lambda command, data: dispatcher.sent.append((command, data))
    dispatcher.handle_initialize(CHAIN_SPACE)
    return dispatcher


def _new_jobs(dispatcher, n: int) -> list[dict]:
    import nni
    from nni.runtime.tuner_command_channel import CommandType

    before = len(dispatcher.sent)
    dispatcher.handle_request_trial_jobs(n)
    return [nni.load(data) for command, data in dispatcher.sent[before:] if command == CommandType.NewTrialJob]


def _redelivered_chain(dispatcher) -> tuple[dict, dict]:
    """Run the chain above through NNI's own dispatcher; return (A's job, B's job)."""
    import nni

    a, b = _new_jobs(dispatcher, 2)
    dispatcher.handle_trial_end({"trial_job_id": "A", "event": "USER_CANCELED", "hyper_params": nni.dump(a)})
    dispatcher.handle_report_metric_data({"parameter_id": a["parameter_id"], "trial_job_id": "B", "type": "FINAL",
                                          "sequence": 0, "value": nni.dump({"default": 0.5, "val_acc": 0.5})})
    dispatcher.handle_trial_end({"trial_job_id": "B", "event": "SUCCEEDED", "hyper_params": nni.dump(b)})
    return a, b


def test_stock_tpe_dies_of_a_result_for_a_parameter_id_whose_trial_ended():
    from nni.algorithms.hpo.tpe_tuner import TpeTuner

    with pytest.raises(KeyError):  # tpe_tuner.py:197 `self._running_params.pop(parameter_id)`
        _redelivered_chain(_dispatcher(TpeTuner(optimize_mode="maximize", seed=0)))


def test_stock_evolution_dies_of_it_too():
    from nni.algorithms.hpo.evolution_tuner import EvolutionTuner

    with pytest.raises(RuntimeError, match="not in running_trials"):
        _redelivered_chain(_dispatcher(EvolutionTuner(optimize_mode="maximize", population_size=4)))


def _tuners():
    from common.nni_compat import TPE, Evolution, GridSearch, Random
    from common.pareto_tuner import ParetoTuner
    from common.rl_tuner import ReinforceTuner

    return {
        "TPE": lambda: TPE(optimize_mode="maximize", seed=0),
        "GridSearch": GridSearch,
        "Evolution": lambda: Evolution(optimize_mode="maximize", population_size=4),
        "Random": lambda: Random(seed=0),
        "Reinforce": lambda: ReinforceTuner(seed=0),
        "NSGA-II": lambda: ParetoTuner(objectives={"val_acc": "maximize"}, population_size=2),
    }


@pytest.mark.parametrize("name", ["TPE", "GridSearch", "Evolution", "Random", "Reinforce", "NSGA-II"])
def test_every_tuner_the_configs_name_survives_the_chain_and_goes_on(name, caplog):
    import nni

    tuner = _tuners()[name]()
    dispatcher = _dispatcher(tuner)
    with caplog.at_level("WARNING", logger="nni.tuner.compat"):
        a, _ = _redelivered_chain(dispatcher)
        # NNI sends a metric twice when a trial's report is retried after a reset connection: absorbed too
        dispatcher.handle_report_metric_data({"parameter_id": a["parameter_id"], "trial_job_id": "B", "type": "FINAL",
                                              "sequence": 0, "value": nni.dump({"default": 0.5, "val_acc": 0.5})})
        more = _new_jobs(dispatcher, 1)
    assert len(more) == 1 and more[0]["parameters"]
    assert "result after its trial ended" in caplog.text and "a second result" in caplog.text


def test_the_late_result_reaches_the_tuner_as_a_measurement():
    from common.pareto_tuner import ParetoTuner

    tuner = ParetoTuner(objectives={"val_acc": "maximize"}, population_size=2)
    a, _ = _redelivered_chain(_dispatcher(tuner))
    completed = [t for t in tuner.study.trials if t.state.name == "COMPLETE"]
    assert [(t.params, t.values) for t in completed] == [(a["parameters"], [0.5])]


def test_a_grid_point_whose_trial_ran_other_parameters_is_handed_out_again():
    from common.nni_compat import GridSearch

    dispatcher = _dispatcher(GridSearch())
    _, b = _redelivered_chain(dispatcher)  # B ran A's point: B's own point has not run
    rest = [job["parameters"] for job in _new_jobs(dispatcher, 3)]
    assert rest[0] == b["parameters"]
    assert sorted(p["x"] for p in rest[1:]) == sorted({0, 1, 2, 3} - {b["parameters"]["x"], _first_x(dispatcher)})


def _first_x(dispatcher) -> int:
    import nni

    return nni.load(dispatcher.sent[1][1])["parameters"]["x"]  # sent[0] is Initialized


def test_the_wrappers_load_the_way_nni_loads_a_custom_tuner():
    from nni.tools.package_utils import create_customized_class_instance
    from nni.tuner import Tuner

    from tests.nnictl_utils import ROOT

    tuner = create_customized_class_instance({"codeDirectory": str(ROOT), "className": "common.nni_compat.TPE",
                                              "classArgs": {"optimize_mode": "maximize", "seed": 0}})
    assert isinstance(tuner, Tuner) and type(tuner).__name__ == "TPE"  # the name the web UI shows


# ------------------------------------------------------------------------------------------------
# The trial's command channel and a reset connection (issue #27): a stand-in for the manager's HTTP channel
# (nni_node/common/command_channel/http.js: PUT acts on the body then answers; GET answers a queued command or 408
# after 1 s; the REST API beside it lists a trial's metrics) whose scripted PUTs reset the connection.


class _Manager:
    def __init__(self, plan: list[str]) -> None:
        import http.server
        import threading

        self.plan = list(plan)  # per PUT: "ok", "reset-before" (body never read) or "reset-answer" (acted on)
        self.requests: list[dict] = []
        self.metrics: list[dict] = []
        self.outgoing: list[dict] = []
        manager = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_PUT(self) -> None:
                step = manager.plan.pop(0) if manager.plan else "ok"
                if step == "reset-before":
                    return self._reset()
                command = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if command["type"] == "request_parameter":
                    manager.requests.append(command)
                    manager.outgoing.append({"type": "parameter", "parameter": json.dumps(
                        {"parameter_id": len(manager.requests) - 1, "parameters": {"x": len(manager.requests)}})})
                else:
                    manager.metrics.append(json.loads(command["metric"]))
                if step == "reset-answer":  # the body was acted on; the answer breaks off mid-way
                    self.send_response(200)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    self.wfile.write(b"5\r\nab")
                    self.wfile.flush()
                    return self._reset()
                self._answer(200, b"")

            def do_GET(self) -> None:
                if "/api/v1/nni/metric-data/" in self.path:
                    return self._answer(200, json.dumps(manager.metrics).encode())
                if manager.outgoing:
                    return self._answer(200, json.dumps(manager.outgoing.pop(0)).encode())
                time.sleep(0.1)
                self._answer(408, b"")

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _reset(self) -> None:
                import socket
                import struct

                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
                self.close_connection = True
                self.connection.close()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/env/local-env/T1"

    def channel(self):
        from common.nni_compat import _resilient_channel_class

        return _resilient_channel_class()(self.url, retries=3, backoff_s=0.05, silence_s=1.0, answer_s=10.0)


@pytest.fixture
def manager():
    made = []

    def make(plan: list[str]) -> _Manager:
        made.append(_Manager(plan))
        return made[-1]

    yield make
    for m in made:
        m.server.shutdown()


def test_stock_channel_kills_the_trial_on_a_reset_while_asking_for_parameters(manager):
    import requests
    from nni.runtime.trial_command_channel.v3 import TrialCommandChannelV3

    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        TrialCommandChannelV3(manager(["reset-answer"]).url).receive_parameter()


def test_a_request_the_manager_got_is_not_repeated(manager, capsys):
    m = manager(["reset-answer"])
    assert m.channel().receive_parameter() == {"parameter_id": 0, "parameters": {"x": 1}}
    assert len(m.requests) == 1  # a second request would take another trial's parameters
    assert "ChunkedEncodingError" in capsys.readouterr().out  # said in trial.log


def test_a_request_the_manager_never_got_is_asked_again(manager):
    m = manager(["reset-before", "reset-before"])
    assert m.channel().receive_parameter() == {"parameter_id": 0, "parameters": {"x": 1}}
    assert len(m.requests) == 1


def test_a_manager_that_never_answers_fails_the_trial_in_one_line(manager):
    from common.nni_compat import ChannelError

    m = manager(["reset-before"] * 10)
    with pytest.raises(ChannelError, match="4 connections reset"):
        m.channel().receive_parameter()


@pytest.mark.parametrize("plan", [["reset-answer"], ["reset-before"], ["reset-before", "reset-answer"]])
def test_a_final_result_reaches_the_manager_exactly_once(manager, plan):
    m = manager(plan)
    m.channel().send_metric(type="FINAL", parameter_id=0, trial_job_id="T1", sequence=0, value={"default": 0.5})
    assert [(r["type"], json.loads(r["value"])) for r in m.metrics] == [("FINAL", {"default": 0.5})]


def test_outside_an_nni_trial_the_channel_is_left_alone(monkeypatch):
    from nni.runtime import trial_command_channel

    from common.nni_compat import resilient_trial_channel

    monkeypatch.delenv("NNI_TRIAL_COMMAND_CHANNEL", raising=False)
    monkeypatch.setattr(trial_command_channel, "_channel", None)
    resilient_trial_channel()
    assert trial_command_channel._channel is None


def test_hyperband_survives_the_chain_too(offline_dispatcher):
    """The advisor (pruning's config.hyperband*.yml) keeps a result per id, so a late one only joins its round."""
    import nni

    from common.nni_compat import Hyperband

    advisor = Hyperband(optimize_mode="maximize", R=3, eta=3)
    advisor.handle_update_search_space(HB_SPACE)
    a, b, c = _request(advisor, 3)
    advisor.handle_trial_end({"trial_job_id": "A", "event": "USER_CANCELED", "hyper_params": nni.dump(a)})
    for job, ran, trial in ((b, a, "B"), (c, b, "C")):  # each later trial ran the previous form's parameters
        advisor.handle_report_metric_data({"parameter_id": ran["parameter_id"], "trial_job_id": trial,
                                           "type": "FINAL", "sequence": 0, "value": nni.dump(0.5)})
        advisor.handle_trial_end({"trial_job_id": trial, "event": "SUCCEEDED", "hyper_params": nni.dump(job)})
    promoted = _request(advisor, 1)
    assert promoted and promoted[0]["parameters"]["TRIAL_BUDGET"] == 3
