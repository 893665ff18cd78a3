"""Is a deployed int8 file right on a CPU without VNNI? Run it there: an AVX2-only x86 CPU emulated by QEMU.

An int8 file on the `full` 8-bit weight grid is exact on CPUs with VNNI, AMX or ARM dot products, and
silently less accurate on AVX2-only x86 (AMD Zen 2/3, Intel before Cascade Lake), whose u8 x s8 kernels
add pairs of products in a saturating int16 (common/cpu.py). The agreement gate cannot see that: it runs
on the machine that built the file. This check runs the same file, on the same validation images, under
`qemu-x86_64 -cpu Haswell` (QEMU >= 7.2 executes AVX2 in software, VPMADDUBSW's saturation included, and
ONNX Runtime and OpenVINO pick their AVX2 kernels from the emulated CPUID), and compares its top-1 with
the host's. Only correctness is measured under emulation, never speed.

`--portability-check avx2` (the default of the `cpu` and `full` profiles) reports `agreement_val_avx2_<runtime>`
and `portable_avx2`; where the check cannot run (no qemu-user, a non-x86 host, the emulated runtime failing)
those are null and the log says why: the trial still reports everything it measured on the host.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from common import cpu

CHECKS: tuple[str, ...] = ("avx2", "none")
QEMU = "qemu-x86_64"
EMULATED_CPU = "Haswell"  # AVX2 + FMA, no AVX-512, no VNNI: what Zen 2/3 and pre-Cascade-Lake Xeons offer
QEMU_INSTALL = "apt-get install qemu-user"
# Validation images run under emulation per runtime: a saturating full-grid ResNet-18 disagrees on 5-9 % of
# images, so 64 miss it with probability < 1 %; measured cost in README (docs of --portability-images).
DEFAULT_IMAGES = 64
DEFAULT_TIMEOUT_S = 300.0


class PortabilityError(RuntimeError):
    """The emulated run could not produce predictions (the reason is in the message)."""


def runner_path() -> str:
    """The script run under emulation (common/cli/emulated_runner.py: numpy and the runtime only)."""
    return importlib.util.find_spec("common.cli.emulated_runner").origin


def qemu_path() -> str | None:
    return shutil.which(QEMU)


def unavailable_reason() -> str | None:
    """Why the AVX2 emulation cannot run on this machine, or None when it can."""
    if cpu.cpu_info().machine not in ("x86_64", "AMD64"):
        return f"the emulated AVX2 check runs x86-64 Python under {QEMU}; this host is {cpu.cpu_info().machine}"
    if qemu_path() is None:
        return f"{QEMU} not found: install it ({QEMU_INSTALL}) to check int8 files on an AVX2-only CPU"
    return None


def emulated_top1(model: str | os.PathLike, images: np.ndarray, runtimes: Sequence[str],
                  timeout_s: float = DEFAULT_TIMEOUT_S) -> dict[str, np.ndarray | PortabilityError]:
    """Top-1 class of each image by each runtime ("ort", "openvino") running `model` on an emulated Haswell,
    the runtimes side by side (one emulated thread each); a runtime that failed maps to its PortabilityError."""
    reason = unavailable_reason()
    if reason:
        raise PortabilityError(reason)
    with tempfile.TemporaryDirectory(prefix="avx2-check-") as tmp:
        inputs = Path(tmp) / "images.npy"
        np.save(inputs, np.ascontiguousarray(images, dtype=np.float32))
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
        running = {}
        for runtime in runtimes:
            command = [qemu_path(), "-cpu", EMULATED_CPU, sys.executable, runner_path(), str(model), runtime,
                       str(inputs), str(Path(tmp) / f"{runtime}.npy")]
            # A session of its own: a hung emulator is killed with everything it started.
            running[runtime] = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                                text=True, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        return {runtime: _collect(runtime, process, Path(tmp) / f"{runtime}.npy", len(images), deadline)
                for runtime, process in running.items()}


def _collect(runtime: str, process: subprocess.Popen, out: Path, count: int,
             deadline: float) -> np.ndarray | PortabilityError:
    where = f"{runtime} under {QEMU} -cpu {EMULATED_CPU}"
    try:
        _, stderr = process.communicate(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return PortabilityError(f"{where} did not finish in time")
    if process.returncode != 0:
        lines = [line for line in stderr.strip().splitlines() if "TCG doesn't support" not in line]
        last = lines[-1] if lines else "no message"
        return PortabilityError(f"{where} failed (exit status {process.returncode}): {last}")
    try:
        top1 = np.load(out)
    except (OSError, ValueError) as err:
        return PortabilityError(f"{where} wrote no predictions: {err}")
    if top1.shape != (count,):
        return PortabilityError(f"{where} returned {top1.shape} predictions for {count} images")
    return top1


@dataclass(frozen=True)
class Portability:
    """What the AVX2 check found for one int8 file: per runtime, its top-1 agreement with the host's (None:
    not checked), and whether the shipped runtime is portable (None: unknown, `note` says why)."""

    check: str
    agreement: Mapping[str, float | None] = field(default_factory=dict)
    portable: bool | None = None
    images: int = 0
    seconds: float = 0.0
    note: str = ""

    def runtime_ok(self, runtime: str, min_agreement: float) -> bool | None:
        value = self.agreement.get(runtime)
        return None if value is None else value >= min_agreement

    def result_keys(self, runtimes: Sequence[str] = ("ort", "openvino")) -> dict[str, Any]:
        return {"portability_check_used": self.check, "portable_avx2": self.portable,
                **{f"agreement_val_avx2_{r}": self.agreement.get(r) for r in runtimes},
                "portability_images": self.images, "seconds_portability": self.seconds,
                "portability_note": self.note}


def check_avx2(model: str | os.PathLike, images: np.ndarray, host_top1: Mapping[str, np.ndarray], *,
               min_agreement: float, timeout_s: float = DEFAULT_TIMEOUT_S,
               log: Callable[[str], None] = print) -> Portability:
    """Run `model` on each runtime of `host_top1` (its host top-1 on `images`) under the emulated AVX2-only
    CPU; agreement with the host per runtime. `portable` is decided later, for the runtime that ships
    (`decide`). Never raises for a failed emulation: that runtime's agreement is None and `note` says why."""
    reason = unavailable_reason()
    if reason:
        log(f"portability check skipped: {reason}")
        return Portability("skipped", dict.fromkeys(host_top1), None, 0, 0.0, reason)  # what ran: nothing
    t0 = time.perf_counter()
    agreement: dict[str, float | None] = {}
    notes = []
    for runtime, emulated in emulated_top1(model, images, list(host_top1), timeout_s).items():
        if isinstance(emulated, PortabilityError):
            agreement[runtime] = None
            notes.append(str(emulated))
            log(f"portability check: {emulated}")
            continue
        agreement[runtime] = float((emulated == np.asarray(host_top1[runtime])).mean())
        log(f"portability check: {runtime} on an emulated {EMULATED_CPU} (AVX2, no VNNI) agrees with this CPU "
            f"on {agreement[runtime]:.1%} of {len(images)} validation images")
    return Portability("avx2", agreement, None, len(images), time.perf_counter() - t0, "; ".join(notes))


def host_is_avx2_only() -> bool:
    """An x86 host without exact int8 kernels: its own agreement gate already is the AVX2 check."""
    info = cpu.cpu_info()
    return info.machine in ("x86_64", "AMD64") and not info.exact_int8


def from_host_gate(host_agreement: Mapping[str, float]) -> Portability:
    """On an AVX2-only host the gate against NNI's simulation is the AVX2 check."""
    return Portability("avx2", dict(host_agreement), None, 0, 0.0, "this CPU is AVX2-only: the host gate is the check")


def decide(result: Portability, shipped: str, min_agreement: float) -> Portability:
    """`result` with `portable` set for the runtime that ships."""
    return replace(result, portable=result.runtime_ok(shipped, min_agreement))


def skipped() -> Portability:
    return Portability("none", {}, None, 0, 0.0, "--portability-check none")
