"""The machine a number came from, as every record names it (bench results, the reference run's provenance, the
reproduction page): CPU model, family/model numbers, and the vector instruction sets that decide the kernels'
rounding. One reader of /proc/cpuinfo for all of them."""
from __future__ import annotations

import os
import platform
from pathlib import Path


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def _field(name: str) -> str:
    """The first processor's ``name`` field ('' where /proc/cpuinfo lacks it)."""
    return next((line.split(":", 1)[1].strip() for line in _cpuinfo()
                 if line.split(":", 1)[0].strip() == name), "")


def cpu_model() -> str:
    """The CPU's model name ('AMD EPYC', 'Intel(R) Xeon(R) Processor'; the platform's name off Linux)."""
    return _field("model name") or platform.processor() or platform.machine()


def vector_isa() -> str:
    """The widest x86 vector extensions the CPU reports (the kernels are compiled for them)."""
    flags = set(_field("flags").split())
    if not flags:
        return "unknown"
    return ", ".join(isa for isa in ("avx512f", "avx2", "fma") if isa in flags) or "none of avx512f, avx2, fma"


def cpu_facts() -> dict:
    """The CPU model, its family/model numbers (virtual machines often report a bare family name), the instruction
    sets and the core count."""
    return {"cpu": cpu_model(), "cpu_family_model": f"{_field('cpu family')}/{_field('model')}",
            "instruction_sets": vector_isa(), "cores": os.cpu_count()}
