"""Energy of an experiment: the monitor around the measured window, turned into the result's section.

Per GPU: counter-based joules over the exact window of the measured requests, split into static (idle
power x duration) and dynamic; totals per request and per token; in disaggregated mode the prefill GPU's
energy is the prefill phase and the decode GPU's the decode phase. Without an NVIDIA driver every
energy field is null and `reason` says why (never zero).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

TIMELINE_POINTS = 600


class EnergyMeter:
    """Wraps monitor.PowerMonitor; a no-op that records its reason when no GPU can be measured."""

    def __init__(
        self, gpu_ids: list[int], roles: dict[int, str], interval_s: float, backend: str, csv_path: Path
    ) -> None:
        self.gpu_ids, self.roles, self.interval_s = list(gpu_ids), dict(roles), interval_s
        self.backend_kind, self.csv_path = backend, csv_path
        self.monitor: Any = None
        self.reason: str | None = None
        self.idle_w: dict[int, float | None] | None = None
        self.idle_seconds: float | None = None
        self.window: Any = None
        if backend == "none":
            self.reason = "monitoring disabled (--monitor none)"
        elif not self.gpu_ids:
            self.reason = "no GPUs to monitor (CPU run or --gpu-ids empty)"

    def start(self) -> None:
        if self.reason:
            return
        from monitor import MonitorUnavailable, PowerMonitor, open_backend

        try:
            backend = (
                open_backend(self.backend_kind) if isinstance(self.backend_kind, str) else self.backend_kind
            )
            self.monitor = PowerMonitor(self.gpu_ids, self.interval_s, backend, csv_path=self.csv_path)
            self.monitor.start()
        except MonitorUnavailable as exc:
            self.reason = str(exc)
            self.monitor = None

    def measure_idle(self, seconds: float) -> None:
        if self.monitor is None:
            return
        self.idle_w = {int(k): v for k, v in self.monitor.measure_idle(seconds).items()}
        self.idle_seconds = seconds

    def begin(self) -> None:
        if self.monitor is not None:
            self.monitor.begin_window("measured")

    def end(self) -> None:
        if self.monitor is not None and self.window is None:
            self.window = self.monitor.end_window("measured")

    def stop(self) -> None:
        if self.monitor is not None:
            self.end_if_open()
            self.monitor.stop()

    def end_if_open(self) -> None:
        try:
            self.end()
        except Exception as exc:  # a window never begun (interrupted during idle baseline)
            log.debug("no energy window to close: %s", exc)

    def section(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """The result's `energy` section."""
        if self.monitor is None or self.window is None:
            return {
                "available": False,
                "reason": self.reason or "no measured window (run interrupted early)",
                "gpus": None,
                "totals": None,
                "phases": None,
            }
        measured = [r for r in records if not r.get("warmup") and r.get("ok")]
        n_req = len(measured)
        out_tok = sum(r.get("completion_tokens") or 0 for r in measured)
        in_tok = sum(r.get("prompt_tokens") or 0 for r in measured)
        win = self.window.to_dict()
        gpus = []
        for g in self.gpu_ids:
            w = _gpu_entry(win, g)
            idle = (self.idle_w or {}).get(g)
            static = idle * w["duration_s"] if idle is not None and w.get("energy_j") is not None else None
            dynamic = w["energy_j"] - static if static is not None else None
            gpus.append(
                {
                    "index": g,
                    "role": self.roles.get(g, "serving"),
                    **w,
                    "idle_power_w": idle,
                    "static_j": static,
                    "dynamic_j": dynamic,
                }
            )

        def totals(sel: list[dict[str, Any]]) -> dict[str, Any]:
            e = _sum(x.get("energy_j") for x in sel)
            return {
                "gpus": [x["index"] for x in sel],
                "energy_j": e,
                "static_j": _sum(x.get("static_j") for x in sel),
                "dynamic_j": _sum(x.get("dynamic_j") for x in sel),
                "j_per_request": e / n_req if e is not None and n_req else None,
                "j_per_output_token": e / out_tok if e is not None and out_tok else None,
                "j_per_input_token": e / in_tok if e is not None and in_tok else None,
                "avg_power_w": _sum(x.get("avg_power_w") for x in sel),
                "peak_power_w": max((x.get("peak_power_w") or 0.0 for x in sel), default=None),
            }

        serving = [x for x in gpus if x["role"] != "idle"]
        phases = None
        by_role = {x["role"]: x for x in gpus}
        if "prefill" in by_role and "decode" in by_role:
            phases = {
                "prefill_j": _sum(x.get("energy_j") for x in gpus if x["role"] == "prefill"),
                "decode_j": _sum(x.get("energy_j") for x in gpus if x["role"] == "decode"),
                "note": "prefill phase = prefill GPU(s), decode phase = decode GPU(s), over the window",
            }
        return {
            "available": True,
            "reason": None,
            "method": "NVML total-energy counter deltas over the measured window "
            "(integrated instant power only where a GPU lacks the counter: see each GPU's method)",
            "window": {k: v for k, v in win.items() if k != "gpus"},
            "idle_baseline": {"seconds": self.idle_seconds, "power_w": self.idle_w},
            "gpus": gpus,
            "totals": {"all_gpus": totals(gpus), "serving_gpus": totals(serving)},
            "phases": phases,
            "complete": all(x.get("complete", True) for x in gpus),
            "monitor": self.monitor.to_json(),
            "timeline": self.monitor.timeline(TIMELINE_POINTS),
            "power_csv": self.csv_path.name,
        }


def _sum(values: Any) -> float | None:
    vals = list(values)
    if not vals or any(v is None for v in vals):
        return None
    return float(sum(vals))


def _gpu_entry(win: dict[str, Any], gpu: int) -> dict[str, Any]:
    """One GPU's part of `WindowResult.to_dict()` (keyed by the GPU id as a string)."""
    entry = win["gpus"].get(str(gpu))
    if entry is None:
        raise KeyError(f"window has no GPU {gpu}")
    return dict(entry)
