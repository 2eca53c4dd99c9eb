"""Host CPU package and DRAM energy from RAPL, read through Linux's powercap tree as Zeus does.

`/sys/class/powercap/intel-rapl:<pkg>` is a package zone (name `package-<pkg>`), `intel-rapl:<pkg>:<n>`
its subzones (`dram`, `core`, `uncore`), `intel-rapl:<n>` named `psys` the platform. Each has `energy_uj`
(a counter that wraps at `max_energy_range_uj`). A window reads every zone at its start and end and
polls in between (every `poll_s`, in a daemon thread) so a counter that wraps is counted, once per wrap,
as long as the poll is shorter than the time to wrap (minutes at hundreds of watts).

Not readable -> `RaplUnavailable` with the reason: no powercap RAPL zones (a VM, a non-x86 host, the
driver not loaded) or `energy_uj` readable by root only (Linux >= 5.10, CVE-2020-8694).
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

POWERCAP = Path("/sys/class/powercap")
_ZONE = re.compile(r"^intel-rapl:(\d+)(?::(\d+))?$")


class RaplUnavailable(RuntimeError):
    """RAPL cannot be read on this host; the message is the reason a result records."""


@dataclass(frozen=True, slots=True)
class Zone:
    zone: str
    name: str
    kind: str
    package: int | None
    path: Path
    max_uj: int


def _kind(name: str) -> str:
    if name.startswith("package"):
        return "package"
    return name if name in ("dram", "core", "uncore", "psys") else "other"


def discover(root: Path = POWERCAP) -> list[Zone]:
    """Every RAPL zone under `root`, packages first; raises RaplUnavailable when there is none or when
    their counters cannot be read."""
    if not root.is_dir():
        raise RaplUnavailable(f"no {root}: this host exposes no powercap (a VM or a non-Linux host)")
    zones: list[Zone] = []
    for d in sorted(root.iterdir()):
        m = _ZONE.match(d.name)
        if not m or not (d / "energy_uj").exists():
            continue
        try:
            name = (d / "name").read_text().strip()
            max_uj = int((d / "max_energy_range_uj").read_text().strip())
        except (OSError, ValueError):
            continue
        kind = _kind(name)
        package = int(m.group(1)) if kind != "psys" else None
        zones.append(Zone(d.name, name, kind, package, d / "energy_uj", max_uj))
    if not zones:
        raise RaplUnavailable(
            f"no RAPL zones under {root} (a VM, a CPU without RAPL, or the intel_rapl driver not loaded)"
        )
    try:
        for z in zones:
            int(z.path.read_text())
    except PermissionError:
        raise RaplUnavailable(
            f"{zones[0].path} is readable by root only (Linux >= 5.10, CVE-2020-8694); run as root or "
            f"`sudo chmod a+r {root}/intel-rapl:*/energy_uj`"
        ) from None
    except (OSError, ValueError) as exc:
        raise RaplUnavailable(f"cannot read RAPL energy: {exc}") from None
    return sorted(zones, key=lambda z: (z.kind != "package", z.zone))


@dataclass(slots=True)
class _Track:
    """One zone's counter through a window: start value, last value, wraps seen."""

    start_uj: int
    last_uj: int
    wraps: int = 0


@dataclass
class RaplWindow:
    """Energy of every RAPL zone between `begin` and `end`; `poll` (also run by the window's thread)
    counts wraps."""

    root: Path = POWERCAP
    poll_s: float = 5.0
    zones: list[Zone] = field(default_factory=list)
    _tracks: dict[str, _Track] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _t0: float = 0.0
    duration_s: float | None = None

    def begin(self) -> None:
        """Read every zone (raises RaplUnavailable) and start polling."""
        self.zones = discover(self.root)
        self._t0 = time.monotonic()
        self._tracks = {z.zone: _Track(v, v) for z in self.zones for v in [self._read(z)]}
        if self.poll_s > 0:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="rapl-poll", daemon=True)
            self._thread.start()

    def _read(self, zone: Zone) -> int:
        return int(zone.path.read_text())

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.poll()
            except (OSError, ValueError):
                return  # the end read will say what is wrong

    def poll(self) -> None:
        """Read every zone once; a value below the last one is a wrap."""
        with self._lock:
            for z in self.zones:
                v = self._read(z)
                tr = self._tracks[z.zone]
                if v < tr.last_uj:
                    tr.wraps += 1
                tr.last_uj = v

    def end(self) -> list[dict[str, Any]]:
        """Stop polling, read the end values; per zone: zone, name, kind, package, energy_j, wraps."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.poll()
        self.duration_s = time.monotonic() - self._t0
        out = []
        for z in self.zones:
            tr = self._tracks[z.zone]
            uj = tr.last_uj - tr.start_uj + tr.wraps * z.max_uj  # as Zeus: the counter runs 0..max
            out.append(
                {
                    "zone": z.zone,
                    "name": z.name,
                    "kind": z.kind,
                    "package": z.package,
                    "energy_j": uj / 1e6,
                    "wraps": tr.wraps,
                }
            )
        return out
