"""What this CPU can do for int8, detected once, and the int8 weight grid that is exact on it.

Why it matters: on x86 without VNNI (AVX2 or AVX-512 only: AMD Zen 2/3, Intel before Cascade Lake) the
uint8 x int8 kernels of ONNX Runtime (and OpenVINO) multiply with VPMADDUBSW, which adds two u8*s8
products into a *saturating* int16. With 8-bit weights (|w| <= 127) and uint8 activations (<= 255) a pair
can reach 2 * 255 * 127 = 64,770 > 32,767: the deployed model silently computes something other than the
grid NNI simulated. ONNX Runtime's and OpenVINO's documentation both give 7-bit weights as the remedy:
|w| <= 63 keeps every pair within 2 * 255 * 63 = 32,130. VNNI (VPDPBUSD), AMX and ARM's dot-product
instructions accumulate in int32 and are exact at the full 8-bit grid.

Schemes (`--int8-scheme`):
- `reduced` (default): weights at most 7 bits wide (NNI trains or calibrates on that grid, so what ships is
  what was simulated); exact on every CPU, so a file that is right wherever it is copied;
- `full`: weights on NNI's full `bits`-wide grid; exact only where the kernels do not saturate: choose it
  for a known VNNI / AMX / ARM deployment target (the trial log warns);
- `auto`: `full` where this CPU has exact int8 kernels, `reduced` elsewhere: for a file that will only
  ever run on the kind of CPU that built it.
"""

from __future__ import annotations

import functools
import platform
from dataclasses import dataclass
from pathlib import Path

INT8_SCHEMES: tuple[str, ...] = ("auto", "full", "reduced")
# Widest weight grid that cannot saturate a u8 x s8 pair sum in int16 (2 * 255 * 63 <= 32767).
SATURATION_SAFE_WEIGHT_BITS = 7

FULL_GRID_WARNING = ("full 8-bit weight grid: this int8 file saturates (silently less accurate) on x86 CPUs without "
                     "VNNI (AMD Zen 2/3, Intel before Cascade Lake); --int8-scheme reduced is exact everywhere")

# /proc/cpuinfo flags that decide which int8 kernels run (x86: "flags", ARM: "Features").
_X86_ISA = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
_X86_EXACT_INT8 = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
_ARM_ISA = ("asimd", "asimddp", "i8mm", "sve")
# Flags of bf16 arithmetic in hardware (oneDNN uses them for bf16 convolutions; elsewhere bf16 is emulated).
_NATIVE_BF16 = frozenset({"amx_bf16", "avx512_bf16", "bf16"})


@dataclass(frozen=True)
class CpuInfo:
    """The CPU model and the instruction-set features that matter for int8 kernels."""

    model: str
    machine: str  # platform.machine(): x86_64, aarch64, ...
    features: tuple[str, ...]  # the int8-relevant ones present, in a fixed order
    native_bf16: bool = False  # bf16 matrix instructions (AMX-BF16, AVX512-BF16, ARM BF16)

    @property
    def isa(self) -> str:
        """The int8-relevant features joined with '+', e.g. `avx2+avx512f+avx512_vnni`; `none` if none."""
        return "+".join(self.features) or "none"

    @property
    def isa_class(self) -> str:
        """A short, stable name of the CPU's int8 class (results/speed/<class>.json): its widest int8 instructions,
        `amx`, `avx512-vnni`, `avx-vnni`, `avx512`, `avx2`; ARM `arm-i8mm`, `arm-dotprod`, `arm`; else the
        machine's name. CPUs of one class run the same int8 kernels; bf16 is recorded beside it, not in it."""
        x86 = (("amx_int8", "amx"), ("avx512_vnni", "avx512-vnni"), ("avx_vnni", "avx-vnni"), ("avx512f", "avx512"),
               ("avx2", "avx2"))
        arm = (("i8mm", "arm-i8mm"), ("asimddp", "arm-dotprod"), ("asimd", "arm"))
        return next((name for flag, name in x86 + arm if flag in self.features), self.machine.lower() or "unknown")

    @property
    def exact_int8(self) -> bool:
        """Whether u8 x s8 kernels accumulate without int16 saturation at the full 8-bit weight grid."""
        if self.machine in ("x86_64", "AMD64", "i686", "i386"):
            return bool(_X86_EXACT_INT8 & set(self.features))
        # ARM's int8 GEMMs widen to int16/int32 before adding (SDOT/UDOT with dotprod, SMULL/SADALP
        # without): no saturating pair sum.
        return True


def parse_cpuinfo(text: str, machine: str) -> CpuInfo:
    """CpuInfo from the text of /proc/cpuinfo (first processor) and platform.machine()."""
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    known = _X86_ISA if machine in ("x86_64", "AMD64", "i686", "i386") else _ARM_ISA
    return CpuInfo(model=model or platform.processor() or machine, machine=machine,
                   features=tuple(f for f in known if f in flags), native_bf16=bool(_NATIVE_BF16 & flags))


@functools.cache
def cpu_info() -> CpuInfo:
    """This machine's CPU (read once per process)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: the model name is all we can say; assume the kernels may saturate
        text = ""
    return parse_cpuinfo(text, platform.machine())


def resolve_int8_scheme(scheme: str, cpu: CpuInfo | None = None) -> str:
    """`full` or `reduced` for `scheme` on `cpu` (default: this one)."""
    if scheme not in INT8_SCHEMES:
        raise ValueError(f"unknown int8 scheme {scheme!r}; choose one of {', '.join(INT8_SCHEMES)}")
    if scheme != "auto":
        return scheme
    return "full" if (cpu or cpu_info()).exact_int8 else "reduced"


def deployed_weight_bits(bits: int, scheme: str) -> int:
    """Weight width NNI quantizes to so that the int8 runtime executes exactly that grid."""
    if scheme not in ("full", "reduced"):
        raise ValueError(f"resolve the int8 scheme first (got {scheme!r})")
    return min(bits, SATURATION_SAFE_WEIGHT_BITS) if scheme == "reduced" else bits


def describe() -> dict[str, str]:
    """Result keys naming this CPU: every quantization, pipeline and bench result carries them."""
    cpu = cpu_info()
    return {"cpu_model": cpu.model, "cpu_isa": cpu.isa}
