"""The AVX2 portability check never crashes a trial: no qemu, an emulator that fails or hangs, an AVX2-only host."""

import numpy as np
import pytest

from common import cpu, portability

IMAGES = np.zeros((3, 1, 8, 8), np.float32)
HOST = {"ort": np.array([1, 2, 3]), "openvino": np.array([1, 2, 3])}


def test_without_qemu_the_result_is_null_and_the_log_names_the_install(monkeypatch):
    monkeypatch.setattr(portability, "qemu_path", lambda: None)
    lines = []
    result = portability.decide(portability.check_avx2("m.onnx", IMAGES, HOST, min_agreement=0.99,
                                                       log=lines.append), "ort", 0.99)
    keys = result.result_keys()
    assert keys["portable_avx2"] is None and keys["agreement_val_avx2_ort"] is None
    assert "apt-get install qemu-user" in lines[0] and "apt-get install qemu-user" in keys["portability_note"]


def test_an_emulator_that_crashes_or_hangs_is_one_log_line_per_runtime(monkeypatch, tmp_path):
    monkeypatch.setattr(portability, "qemu_path", lambda: "/bin/false")  # exits 1 at once, like a crash
    lines = []
    crashed = portability.check_avx2("m.onnx", IMAGES, HOST, min_agreement=0.99, log=lines.append)
    assert crashed.agreement == {"ort": None, "openvino": None} and len(lines) == 2
    assert "ort under qemu-x86_64 -cpu Haswell failed (exit status 1)" in lines[0]
    hang = tmp_path / "hang"
    hang.write_text("#!/bin/sh\nsleep 30\n")
    hang.chmod(0o755)
    monkeypatch.setattr(portability, "qemu_path", lambda: str(hang))
    slow = portability.check_avx2("m.onnx", IMAGES, {"ort": HOST["ort"]}, min_agreement=0.99, timeout_s=1,
                                  log=lines.append)
    assert slow.agreement == {"ort": None} and "did not finish in time" in slow.note


def test_on_an_avx2_only_host_the_host_gate_is_the_check(monkeypatch):
    haswell = cpu.CpuInfo(model="Intel Xeon E5-2680 v3", machine="x86_64", features=("avx2",))
    monkeypatch.setattr(cpu, "cpu_info", lambda: haswell)
    assert portability.host_is_avx2_only()
    result = portability.decide(portability.from_host_gate({"ort": 0.995, "openvino": 0.97}), "ort", 0.99)
    assert result.portable is True and result.agreement["openvino"] == 0.97
    assert portability.decide(result, "openvino", 0.99).portable is False


@pytest.mark.parametrize("machine", ["aarch64"])
def test_a_non_x86_host_says_why_it_cannot_emulate(monkeypatch, machine):
    monkeypatch.setattr(cpu, "cpu_info", lambda: cpu.CpuInfo(model="Neoverse", machine=machine, features=()))
    assert "this host is aarch64" in portability.unavailable_reason()
