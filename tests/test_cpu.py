"""CPU detection and the int8 weight grid that is exact on it."""

import pytest

from common.cpu import (
    SATURATION_SAFE_WEIGHT_BITS,
    CpuInfo,
    cpu_info,
    deployed_weight_bits,
    describe,
    parse_cpuinfo,
    resolve_int8_scheme,
)

EPYC = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13 64-Core Processor
flags\t\t: fpu vme sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma avx2 bmi1 bmi2 sha_ni
processor\t: 1
model name\t: AMD EPYC 7B13 64-Core Processor
flags\t\t: fpu avx2
"""
SKYLAKE = "model name\t: Intel(R) Xeon(R) Gold 6148\nflags\t\t: sse4_2 avx avx2 avx512f avx512dq avx512bw\n"
SAPPHIRE = ("model name\t: Intel(R) Xeon(R) Platinum 8480+\n"
            "flags\t\t: avx2 avx512f avx512_vnni avx_vnni amx_bf16 amx_tile amx_int8\n")
GRAVITON = "processor\t: 0\nBogoMIPS\t: 243.75\nFeatures\t: fp asimd evtstrm aes crc32 atomics asimddp sve i8mm\n"


def test_avx2_and_avx512_without_vnni_saturate():
    for text in (EPYC, SKYLAKE):
        cpu = parse_cpuinfo(text, "x86_64")
        assert not cpu.exact_int8
        assert resolve_int8_scheme("auto", cpu) == "reduced"
    epyc = parse_cpuinfo(EPYC, "x86_64")
    assert epyc.model == "AMD EPYC 7B13 64-Core Processor" and epyc.isa == "avx2"
    assert parse_cpuinfo(SKYLAKE, "x86_64").isa == "avx2+avx512f"


def test_vnni_amx_and_arm_keep_the_full_grid():
    spr = parse_cpuinfo(SAPPHIRE, "x86_64")
    assert spr.exact_int8 and spr.isa == "avx2+avx512f+avx512_vnni+avx_vnni+amx_int8"
    assert resolve_int8_scheme("auto", spr) == "full"
    assert parse_cpuinfo("flags: avx2 avx_vnni\n", "x86_64").exact_int8  # Alder Lake: AVX-VNNI only
    arm = parse_cpuinfo(GRAVITON, "aarch64")
    assert arm.exact_int8 and arm.isa == "asimd+asimddp+i8mm+sve"


def test_explicit_schemes_win_and_typos_fail():
    epyc = parse_cpuinfo(EPYC, "x86_64")
    assert resolve_int8_scheme("full", epyc) == "full"
    assert resolve_int8_scheme("reduced", parse_cpuinfo(SAPPHIRE, "x86_64")) == "reduced"
    with pytest.raises(ValueError, match="unknown int8 scheme 'fast'"):
        resolve_int8_scheme("fast", epyc)


def test_reduced_grid_cannot_saturate_an_int16_pair_sum():
    bits = deployed_weight_bits(8, "reduced")
    assert bits == SATURATION_SAFE_WEIGHT_BITS == 7
    qmax = 2 ** (bits - 1) - 1  # NNI's symmetric grid: -qmax..qmax
    assert 2 * 255 * qmax <= 2 ** 15 - 1 < 2 * 255 * 127  # VPMADDUBSW: two u8*s8 products into int16
    assert deployed_weight_bits(4, "reduced") == 4 and deployed_weight_bits(8, "full") == 8
    with pytest.raises(ValueError, match="resolve"):
        deployed_weight_bits(8, "auto")


def test_this_machine_is_described():
    cpu = cpu_info()
    assert isinstance(cpu, CpuInfo) and cpu.model
    assert describe() == {"cpu_model": cpu.model, "cpu_isa": cpu.isa}


def test_isa_class_names_the_widest_int8_instructions():
    zen4 = "model name\t: AMD EPYC\nflags\t\t: avx2 avx512f avx512_bf16 avx512_vnni\n"
    classes = {text: parse_cpuinfo(text, "x86_64").isa_class for text in (EPYC, SKYLAKE, SAPPHIRE, zen4)}
    assert list(classes.values()) == ["avx2", "avx512", "amx", "avx512-vnni"]
    assert parse_cpuinfo(zen4, "x86_64").native_bf16  # recorded beside the class, not part of it
    assert parse_cpuinfo(GRAVITON, "aarch64").isa_class == "arm-i8mm"
    assert parse_cpuinfo("flags\t\t: sse2\n", "x86_64").isa_class == "x86_64"
