"""The optional pynvml import, the error raised when NVML cannot be had, and the NVML errors we sort by.

Both backends (the real one and the simulator) import this module, and nothing else of each other.
"""

from __future__ import annotations

from typing import Any

try:  # nvidia-ml-py; optional so that `import monitor` works on machines without it
    import pynvml
except ImportError:  # pragma: no cover - depends on the environment
    pynvml = None  # type: ignore[assignment]

NO_ENERGY = "energy fields will be null"


class MonitorUnavailable(RuntimeError):
    """No GPU telemetry can be had; `reason` is one line meant for logs and result files."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def require_pynvml() -> Any:
    """Return the pynvml module or raise MonitorUnavailable saying how to get it."""
    if pynvml is None:
        raise MonitorUnavailable(
            f"NVML unavailable: python package nvidia-ml-py (import pynvml) is not installed; {NO_ENERGY}"
        )
    return pynvml


def _error_classes(*names: str) -> tuple[type[BaseException], ...]:
    if pynvml is None:
        return ()
    return tuple(getattr(pynvml, n) for n in names if hasattr(pynvml, n))


# A read that will never work on this GPU (stop polling it) versus a GPU that fell off the bus.
UNSUPPORTED_ERRORS = _error_classes("NVMLError_NotSupported", "NVMLError_FunctionNotFound")
GPU_LOST_ERRORS = _error_classes("NVMLError_GpuIsLost")


def describe(err: BaseException) -> str:
    """One line naming an error's class and message, for notes and logs."""
    return f"{type(err).__name__}: {err}"
