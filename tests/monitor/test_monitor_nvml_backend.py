"""NvmlBackend over a stand-in for the NVML C library (no GPU here), and the read-only guarantee."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pynvml
import pytest

from monitor import MonitorUnavailable, NvmlBackend, PowerMonitor, open_backend
from monitor.clock import VirtualClock

MONITOR_DIR = Path(__file__).resolve().parents[2] / "monitor"
WRITE_CALL = re.compile(r"(Set|Reset|Clear|Enable|Disable)[A-Z]")


class FakeNvml:
    """Answers the pynvml functions NvmlBackend uses, like a 2-GPU host with instant but no average field."""

    def __init__(self) -> None:
        self.energy = [1_000_000, 2_000_000]
        self.calls: list[str] = []

    def field_values(self, handle: int, field_ids: list[int]) -> Any:
        values = (pynvml.c_nvmlFieldValue_t * len(field_ids))()
        for i, fid in enumerate(field_ids):
            values[i].fieldId = fid
            if fid == pynvml.NVML_FI_DEV_POWER_INSTANT:
                values[i].nvmlReturn = pynvml.NVML_SUCCESS
                values[i].valueType = pynvml.NVML_VALUE_TYPE_UNSIGNED_INT
                values[i].value.uiVal = 312_345 + handle
            else:
                values[i].nvmlReturn = pynvml.NVML_ERROR_NOT_SUPPORTED
        return values

    def energy_mj(self, handle: int) -> int:
        self.energy[handle] += 30_000
        return self.energy[handle]

    def install(self, mp: pytest.MonkeyPatch) -> None:
        funcs = {
            "nvmlInit": lambda: None,
            "nvmlShutdown": lambda: None,
            "nvmlDeviceGetCount": lambda: 2,
            "nvmlDeviceGetHandleByIndex": lambda i: i,
            "nvmlSystemGetDriverVersion": lambda: "570.86.15",
            "nvmlDeviceGetName": lambda h: b"NVIDIA H200",
            "nvmlDeviceGetEnforcedPowerLimit": lambda h: 700_000,
            "nvmlDeviceGetPowerUsage": lambda h: 301_000 + h,
            "nvmlDeviceGetFieldValues": self.field_values,
            "nvmlDeviceGetTotalEnergyConsumption": self.energy_mj,
            "nvmlDeviceGetUtilizationRates": lambda h: SimpleNamespace(gpu=87, memory=41),
            "nvmlDeviceGetMemoryInfo": lambda h: SimpleNamespace(used=120 * 2**30, total=141 * 2**30, free=0),
            "nvmlDeviceGetTemperature": lambda h, sensor: 61,
            "nvmlDeviceGetClockInfo": lambda h, kind: {0: 1980, 1: 1975, 2: 3201}[kind],
            "nvmlDeviceGetCurrentClocksThrottleReasons": lambda h: 4,
            "nvmlDeviceGetPerformanceState": lambda h: 0,
        }
        for name, fn in funcs.items():
            mp.setattr(pynvml, name, self._spy(name, fn))
        # An older pynvml: only the ThrottleReasons spelling exists.
        mp.delattr(pynvml, "nvmlDeviceGetCurrentClocksEventReasons")
        # Any state-changing NVML call fails the test.
        for name in dir(pynvml):
            if name.startswith("nvml") and WRITE_CALL.search(name) and callable(getattr(pynvml, name)):
                mp.setattr(pynvml, name, self._forbidden(name))

    def _spy(self, name: str, fn: Any) -> Any:
        def call(*args: Any) -> Any:
            self.calls.append(name)
            return fn(*args)

        return call

    @staticmethod
    def _forbidden(name: str) -> Any:
        def call(*args: Any) -> Any:
            raise AssertionError(f"monitor called {name}: the monitor must never change GPU state")

        return call


@pytest.fixture
def fake_nvml(monkeypatch: pytest.MonkeyPatch) -> FakeNvml:
    fake = FakeNvml()
    fake.install(monkeypatch)
    return fake


def test_nvml_backend_reads_and_decodes(fake_nvml: FakeNvml) -> None:
    b = open_backend("nvml")
    assert isinstance(b, NvmlBackend)
    assert b.device_count() == 2
    assert b.gpu_name(0) == "NVIDIA H200"  # bytes decoded
    assert b.driver_version() == "570.86.15"
    assert b.power_limit_mw(1) == 700_000
    assert b.power_mw(1) == 301_001
    assert b.power_instant_mw(1) == 312_346
    with pytest.raises(pynvml.NVMLError_NotSupported):
        b.power_average_mw(0)  # the field's own nvmlReturn is honoured
    assert b.total_energy_mj(0) == 1_030_000
    assert b.utilization(0) == (87, 41)
    assert b.memory(0) == (120 * 2**30, 141 * 2**30)
    assert (b.graphics_clock_mhz(0), b.sm_clock_mhz(0), b.mem_clock_mhz(0)) == (1980, 1975, 3201)
    assert b.throttle_reasons(0) == 4  # via nvmlDeviceGetCurrentClocksThrottleReasons
    assert b.temperature_c(0) == 61 and b.pstate(0) == 0
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        b.power_mw(7)
    b.close()


def test_power_monitor_over_nvml_backend_marks_unsupported_field(fake_nvml: FakeNvml) -> None:
    with PowerMonitor([0, 1], 0.02, open_backend("nvml"), clock=VirtualClock()) as mon:
        mon.clock.sleep(0.15)
    summary = mon.to_json()
    assert summary["backend"] == "nvml" and summary["driver_version"] == "570.86.15"
    assert summary["gpus"]["0"]["unsupported_reads"] == ["power_average"]
    assert summary["gpus"]["0"]["samples_missing"] == 0  # unsupported is not missing
    s = mon.samples()
    assert (s.value(1, "power_instant_mw") == 312_346).all()
    assert "nvmlDeviceGetFieldValues" in fake_nvml.calls


def test_init_failures_become_monitor_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_driver() -> None:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)

    monkeypatch.setattr(pynvml, "nvmlInit", no_driver)
    with pytest.raises(MonitorUnavailable, match="driver is not loaded"):
        NvmlBackend()
    monkeypatch.setattr(pynvml, "nvmlInit", lambda: None)
    monkeypatch.setattr(pynvml, "nvmlShutdown", lambda: None)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetCount", lambda: 0)
    with pytest.raises(MonitorUnavailable, match="reports no GPU"):
        NvmlBackend()


def test_no_state_changing_nvml_call_anywhere_in_the_package() -> None:
    names = {n for path in MONITOR_DIR.glob("*.py") for n in re.findall(r"nvml\w+", path.read_text())}
    assert "nvmlDeviceGetTotalEnergyConsumption" in names  # the scan sees the calls
    assert not {n for n in names if WRITE_CALL.search(n)}
