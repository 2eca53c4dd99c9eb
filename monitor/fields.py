"""Names of the NVML reads the sampler performs and the values each read yields."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Read:
    """One NVML call per GPU per sample: `method` on the backend, returning `values` (one or a tuple)."""

    name: str
    method: str
    values: tuple[str, ...]
    nvml_call: str


# Order matters: power first, so a lost GPU is detected on the first call of a sample.
READS: tuple[Read, ...] = (
    Read("power", "power_mw", ("power_mw",), "nvmlDeviceGetPowerUsage"),
    Read("power_instant", "power_instant_mw", ("power_instant_mw",), "FieldValues(POWER_INSTANT)"),
    Read("power_average", "power_average_mw", ("power_average_mw",), "FieldValues(POWER_AVERAGE)"),
    Read("energy", "total_energy_mj", ("energy_mj",), "nvmlDeviceGetTotalEnergyConsumption"),
    Read("utilization", "utilization", ("gpu_util_pct", "mem_util_pct"), "nvmlDeviceGetUtilizationRates"),
    Read("memory", "memory", ("mem_used_bytes", "mem_total_bytes"), "nvmlDeviceGetMemoryInfo"),
    Read("temperature", "temperature_c", ("temperature_c",), "nvmlDeviceGetTemperature"),
    Read("graphics_clock", "graphics_clock_mhz", ("graphics_clock_mhz",), "nvmlDeviceGetClockInfo(GRAPHICS)"),
    Read("sm_clock", "sm_clock_mhz", ("sm_clock_mhz",), "nvmlDeviceGetClockInfo(SM)"),
    Read("mem_clock", "mem_clock_mhz", ("mem_clock_mhz",), "nvmlDeviceGetClockInfo(MEM)"),
    Read(
        "throttle_reasons",
        "throttle_reasons",
        ("throttle_reasons",),
        "nvmlDeviceGetCurrentClocksEventReasons",
    ),
    Read("pstate", "pstate", ("pstate",), "nvmlDeviceGetPerformanceState"),
)
READ_NAMES: tuple[str, ...] = tuple(r.name for r in READS)
READ_BY_NAME: dict[str, Read] = {r.name: r for r in READS}

# Flat list of per-GPU values stored for every sample (NaN when missing).
VALUE_NAMES: tuple[str, ...] = tuple(v for r in READS for v in r.values)
VALUE_INDEX: dict[str, int] = {v: i for i, v in enumerate(VALUE_NAMES)}
