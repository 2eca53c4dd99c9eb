"""GPU telemetry backends: the real read-only NVML one, a protocol, and `open_backend`.

Every method takes an NVML device index and either returns the value in NVML's own units or raises a
`pynvml.NVMLError` subclass (NotSupported, GpuIsLost, ...), exactly like pynvml. No method ever changes
GPU state: this module calls no NVML set* function.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol, runtime_checkable

from monitor.clock import SYSTEM_CLOCK, Clock
from monitor.nvml_lib import NO_ENERGY, MonitorUnavailable, pynvml, require_pynvml
from monitor.simulated import SimulatedNvmlBackend

__all__ = [
    "GpuBackend",
    "MonitorUnavailable",
    "NvmlBackend",
    "open_backend",
    "open_backend_for",
    "require_pynvml",
]

log = logging.getLogger(__name__)


@runtime_checkable
class GpuBackend(Protocol):
    """Per-GPU reads with pynvml semantics (units in the method names, errors as pynvml.NVMLError)."""

    name: str
    energy_wrap_mj: int  # the total-energy counter wraps to 0 at this value
    clock: Clock  # the time its readings follow (the monitor samples on it)

    def device_count(self) -> int: ...
    def driver_version(self) -> str: ...
    def gpu_name(self, gpu: int) -> str: ...
    def power_limit_mw(self, gpu: int) -> int: ...
    def power_mw(self, gpu: int) -> int: ...
    def power_instant_mw(self, gpu: int) -> int: ...
    def power_average_mw(self, gpu: int) -> int: ...
    def total_energy_mj(self, gpu: int) -> int: ...
    def utilization(self, gpu: int) -> tuple[int, int]: ...
    def memory(self, gpu: int) -> tuple[int, int]: ...
    def temperature_c(self, gpu: int) -> int: ...
    def graphics_clock_mhz(self, gpu: int) -> int: ...
    def sm_clock_mhz(self, gpu: int) -> int: ...
    def mem_clock_mhz(self, gpu: int) -> int: ...
    def throttle_reasons(self, gpu: int) -> int: ...
    def pstate(self, gpu: int) -> int: ...
    def close(self) -> None: ...


def _not_supported() -> Exception:
    return pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)


def _field_value(value: Any) -> int | float:
    """Decode a c_nvmlFieldValue_t union according to its valueType."""
    kind = value.valueType
    union = value.value
    by_type = {
        getattr(pynvml, "NVML_VALUE_TYPE_DOUBLE", 0): "dVal",
        getattr(pynvml, "NVML_VALUE_TYPE_UNSIGNED_INT", 1): "uiVal",
        getattr(pynvml, "NVML_VALUE_TYPE_UNSIGNED_LONG", 2): "ulVal",
        getattr(pynvml, "NVML_VALUE_TYPE_UNSIGNED_LONG_LONG", 3): "ullVal",
        getattr(pynvml, "NVML_VALUE_TYPE_SIGNED_LONG_LONG", 4): "sllVal",
        getattr(pynvml, "NVML_VALUE_TYPE_SIGNED_INT", 5): "siVal",
        getattr(pynvml, "NVML_VALUE_TYPE_UNSIGNED_SHORT", 6): "usVal",
    }
    return getattr(union, by_type.get(kind, "uiVal"))


class NvmlBackend:
    """The real backend on top of pynvml. Read-only."""

    name = "nvml"
    energy_wrap_mj = 2**64  # nvmlDeviceGetTotalEnergyConsumption returns an unsigned long long
    clock: Clock = SYSTEM_CLOCK

    def __init__(self) -> None:
        nv = require_pynvml()
        try:
            nv.nvmlInit()
        except nv.NVMLError as err:
            raise MonitorUnavailable(_init_failure_reason(err)) from err
        try:
            count = nv.nvmlDeviceGetCount()
            if count == 0:
                raise MonitorUnavailable(
                    f"NVML unavailable: the driver answers but reports no GPU; {NO_ENERGY}"
                )
            self._handles = [nv.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        except nv.NVMLError as err:
            nv.nvmlShutdown()
            raise MonitorUnavailable(f"NVML unavailable: listing GPUs failed ({err}); {NO_ENERGY}") from err
        except MonitorUnavailable:
            nv.nvmlShutdown()
            raise
        self._fi_instant = getattr(nv, "NVML_FI_DEV_POWER_INSTANT", None)
        self._fi_average = getattr(nv, "NVML_FI_DEV_POWER_AVERAGE", None)
        self._clocks_event_reasons = getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
            nv, "nvmlDeviceGetCurrentClocksThrottleReasons", None
        )
        self._closed = False

    def _h(self, gpu: int) -> Any:
        if not 0 <= gpu < len(self._handles):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return self._handles[gpu]

    def _field(self, gpu: int, field_id: int | None) -> int:
        if field_id is None:
            raise _not_supported()
        result = pynvml.nvmlDeviceGetFieldValues(self._h(gpu), [field_id])[0]
        if result.nvmlReturn != pynvml.NVML_SUCCESS:
            raise pynvml.NVMLError(result.nvmlReturn)
        return int(_field_value(result))

    def device_count(self) -> int:
        return len(self._handles)

    def driver_version(self) -> str:
        return _text(pynvml.nvmlSystemGetDriverVersion())

    def gpu_name(self, gpu: int) -> str:
        return _text(pynvml.nvmlDeviceGetName(self._h(gpu)))

    def power_limit_mw(self, gpu: int) -> int:
        return int(pynvml.nvmlDeviceGetEnforcedPowerLimit(self._h(gpu)))

    def power_mw(self, gpu: int) -> int:
        return int(pynvml.nvmlDeviceGetPowerUsage(self._h(gpu)))

    def power_instant_mw(self, gpu: int) -> int:
        return self._field(gpu, self._fi_instant)

    def power_average_mw(self, gpu: int) -> int:
        return self._field(gpu, self._fi_average)

    def total_energy_mj(self, gpu: int) -> int:
        return int(pynvml.nvmlDeviceGetTotalEnergyConsumption(self._h(gpu)))

    def utilization(self, gpu: int) -> tuple[int, int]:
        rates = pynvml.nvmlDeviceGetUtilizationRates(self._h(gpu))
        return int(rates.gpu), int(rates.memory)

    def memory(self, gpu: int) -> tuple[int, int]:
        info = pynvml.nvmlDeviceGetMemoryInfo(self._h(gpu))
        return int(info.used), int(info.total)

    def temperature_c(self, gpu: int) -> int:
        return int(pynvml.nvmlDeviceGetTemperature(self._h(gpu), pynvml.NVML_TEMPERATURE_GPU))

    def graphics_clock_mhz(self, gpu: int) -> int:
        return int(pynvml.nvmlDeviceGetClockInfo(self._h(gpu), pynvml.NVML_CLOCK_GRAPHICS))

    def sm_clock_mhz(self, gpu: int) -> int:
        return int(pynvml.nvmlDeviceGetClockInfo(self._h(gpu), pynvml.NVML_CLOCK_SM))

    def mem_clock_mhz(self, gpu: int) -> int:
        return int(pynvml.nvmlDeviceGetClockInfo(self._h(gpu), pynvml.NVML_CLOCK_MEM))

    def throttle_reasons(self, gpu: int) -> int:
        if self._clocks_event_reasons is None:
            raise _not_supported()
        return int(self._clocks_event_reasons(self._h(gpu)))

    def pstate(self, gpu: int) -> int:
        return int(pynvml.nvmlDeviceGetPerformanceState(self._h(gpu)))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                pynvml.nvmlShutdown()
            except pynvml.NVMLError as err:  # pragma: no cover - driver specific
                log.warning("nvmlShutdown failed: %s", err)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _init_failure_reason(err: Exception) -> str:
    nv = pynvml
    if isinstance(err, getattr(nv, "NVMLError_LibraryNotFound", ())):
        return f"NVML unavailable: libnvidia-ml.so.1 not found (no NVIDIA driver); {NO_ENERGY}"
    if isinstance(err, getattr(nv, "NVMLError_DriverNotLoaded", ())):
        return f"NVML unavailable: the NVIDIA kernel driver is not loaded; {NO_ENERGY}"
    if isinstance(err, getattr(nv, "NVMLError_NoPermission", ())):
        return f"NVML unavailable: no permission to open the GPU devices; {NO_ENERGY}"
    return f"NVML unavailable: nvmlInit failed ({err}); {NO_ENERGY}"


def open_backend(kind: str = "auto", **sim_options: Any) -> GpuBackend:
    """Open a telemetry backend.

    kind="auto" or "nvml": the real NVML backend, or MonitorUnavailable(reason) when the library or the
    driver is missing. kind="sim": a SimulatedNvmlBackend built with `sim_options`.
    """
    if kind == "sim":
        return SimulatedNvmlBackend(**sim_options)
    if kind not in ("auto", "nvml"):
        raise ValueError(f"unknown backend {kind!r}: use auto, nvml or sim")
    if sim_options:
        raise TypeError(f"options {sorted(sim_options)} only apply to the sim backend")
    return NvmlBackend()


def open_backend_for(kind: str, gpu_ids: list[int]) -> GpuBackend:
    """`open_backend` for the given NVML indices; the simulated backend gets as many GPUs as they need."""
    options = {"n_gpus": max(gpu_ids) + 1} if kind == "sim" else {}
    return open_backend(kind, **options)
