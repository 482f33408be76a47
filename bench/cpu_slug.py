"""The folder a bench run on this CPU writes to: ``bench/results/<slug>/``.

The slug is the CPU's model name from /proc/cpuinfo, lower case, trademarks and "Processor"/"CPU" dropped
("Intel(R) Xeon(R) Platinum 8480+" -> ``intel-xeon-platinum-8480``). Virtual machines often report a bare family
name ("AMD EPYC", "Intel(R) Xeon(R) Processor") that says nothing about the chip, so for AMD CPUs, and for any name
without a model number, the slug adds the CPU family and model numbers (``-f25m1``) and, for AMD, the Zen
generation where those numbers identify it (``amd-epyc-zen3-f25m1``).

    python bench/cpu_slug.py          # prints the slug
    python bench/cpu_slug.py --dir    # prints bench/results/<slug> (relative to the repository)

Standard library only, so that the Makefile can call it with any Python.
"""
from __future__ import annotations

import platform
import re
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

# AMD family 17h/19h/1Ah model ranges by Zen generation (AMD's processor programming references).
_ZEN = {
    23: [(0x00, 0x2F, "zen"), (0x30, 0xFF, "zen2")],
    25: [(0x00, 0x0F, "zen3"), (0x10, 0x1F, "zen4"), (0x20, 0x5F, "zen3"), (0x60, 0x7F, "zen4"), (0xA0, 0xAF, "zen4")],
    26: [(0x00, 0x7F, "zen5")],
}


def cpu_fields(text: str | None = None) -> dict:
    """The first processor's fields of /proc/cpuinfo (empty off Linux)."""
    if text is None:
        try:
            text = Path("/proc/cpuinfo").read_text()
        except OSError:
            text = ""
    fields: dict = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def zen_generation(family: int, model: int) -> str | None:
    for low, high, name in _ZEN.get(family, []):
        if low <= model <= high:
            return name
    return None


def slug(fields: dict | None = None) -> str:
    """This CPU's slug (see the module docstring)."""
    fields = cpu_fields() if fields is None else fields
    name = fields.get("model name") or platform.processor() or platform.machine() or "unknown-cpu"
    name = re.sub(r"\((r|tm)\)|\b(processor|cpu)\b|@.*$", " ", name, flags=re.IGNORECASE)
    base = "-".join(re.findall(r"[a-z0-9]+", name.lower())) or "unknown-cpu"
    family, model = fields.get("cpu family", ""), fields.get("model", "")
    amd = fields.get("vendor_id") == "AuthenticAMD" or base.startswith("amd")
    if family.isdigit() and model.isdigit() and (amd or not re.search(r"\d", base)):
        zen = zen_generation(int(family), int(model)) if amd else None
        base += (f"-{zen}" if zen and zen not in base else "") + f"-f{family}m{model}"
    return base


def results_dir(create: bool = True) -> Path:
    """``bench/results/<slug of this CPU>``, created unless ``create`` is False."""
    folder = RESULTS / slug()
    if create:
        folder.mkdir(parents=True, exist_ok=True)
    return folder


if __name__ == "__main__":
    if sys.argv[1:] == ["--dir"]:
        print(Path("bench") / "results" / slug())
    elif sys.argv[1:]:
        sys.exit(f"usage: {sys.argv[0]} [--dir]")
    else:
        print(slug())
