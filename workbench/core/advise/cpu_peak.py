"""A CPU's peak arithmetic rate per precision, derived as vendors derive it: cores x clock x operations per cycle.

Operations per cycle per core come from the widest unit the ISA flags show (two FMA ports assumed for AVX-512,
as on Xeon Scalable; AMX tiles for bf16 and int8 where present). It is the same formula the catalog's CPU entries
use, so an efficiency learned here carries to them on the same scale.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

# (flag, operations per cycle per core), widest first; the first flag the CPU has wins
PER_CYCLE = {
    "fp32": (("avx512f", 64), ("fma", 32), ("avx2", 16), ("asimd", 16)),
    "bf16": (("amx_bf16", 1024), ("avx512_bf16", 128)),
    "fp16": (("amx_fp16", 1024), ("avx512_fp16", 128), ("asimdhp", 32)),
    "int8": (("amx_int8", 2048), ("avx512_vnni", 256), ("avx_vnni", 128), ("asimddp", 64)),
}


@lru_cache(maxsize=1)
def cpu_facts() -> dict:
    """Clock (MHz: the highest the kernel reports, None when it reports none), threads per core and ISA flags."""
    mhz, siblings, cores, flags = None, None, None, set()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = (part.strip() for part in line.partition(":"))
        if key == "cpu MHz" and mhz is None:
            mhz = float(value)
        elif key == "siblings" and siblings is None:
            siblings = int(value)
        elif key == "cpu cores" and cores is None:
            cores = int(value)
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    max_freq = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    if max_freq.is_file():
        mhz = max(mhz or 0.0, int(max_freq.read_text()) / 1000)
    per_core = siblings // cores if siblings and cores and siblings >= cores else 1
    return {"mhz": mhz, "threads_per_core": per_core, "flags": frozenset(flags)}


def per_cycle(precision: str, flags) -> tuple[int, str] | None:
    """(operations per cycle per core, the flag that gives it) for `precision`, None where the CPU has no native
    unit for it (bf16 and fp16 then run as fp32). int8 without a dot-product flag runs at twice fp32."""
    for flag, ops in PER_CYCLE.get(precision, ()):
        if flag in flags:
            return ops, flag
    if precision == "int8":
        fp32 = per_cycle("fp32", flags)
        return (2 * fp32[0], f"2 x {fp32[1]}") if fp32 else None
    return None


def cpu_peak_gops(precision: str, threads: int, facts: dict | None = None) -> tuple[float, str] | None:
    """(peak GOP/s, its formula) of `threads` of this CPU at `precision`; None without a clock or a native unit.

    Hyperthreads share a core's units: `threads` count as threads / threads-per-core cores (at least one).
    """
    facts = facts or cpu_facts()
    found = per_cycle(precision, facts["flags"])
    if not facts["mhz"] or found is None:
        return None
    ops, flag = found
    cores = max(threads / facts["threads_per_core"], 1.0)
    gops = cores * facts["mhz"] / 1000 * ops
    return gops, f"derived: {cores:g} cores x {facts['mhz'] / 1000:.2f} GHz x {ops} ops/cycle ({flag})"
