"""RAPL host energy over a fake powercap tree laid out as Linux lays it out (two sockets with DRAM
subzones, the platform zone), wrap-around, and the reasons given where RAPL cannot be read."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments.energy import EnergyMeter
from monitor import SimulatedNvmlBackend
from monitor.clock import VirtualClock
from monitor.rapl import RaplUnavailable, RaplWindow, discover

MAX_UJ = 262_143_328_850  # a real package's max_energy_range_uj


def _zone(root: Path, zone: str, name: str, uj: int, max_uj: int = MAX_UJ) -> None:
    d = root / zone
    d.mkdir(parents=True)
    (d / "name").write_text(name + "\n")
    (d / "energy_uj").write_text(f"{uj}\n")
    (d / "max_energy_range_uj").write_text(f"{max_uj}\n")
    (d / "enabled").write_text("1\n")


def _set(root: Path, zone: str, uj: int) -> None:
    (root / zone / "energy_uj").write_text(f"{uj}\n")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "powercap"
    _zone(root, "intel-rapl:0", "package-0", 1_000_000)
    _zone(root, "intel-rapl:0:0", "dram", 500_000, max_uj=65_712_999_613)
    _zone(root, "intel-rapl:1", "package-1", MAX_UJ - 2_000_000)  # about to wrap
    _zone(root, "intel-rapl:1:0", "dram", 7_000_000, max_uj=65_712_999_613)
    _zone(root, "intel-rapl:2", "psys", 9_000_000)
    (root / "intel-rapl").mkdir()  # the control type directory: no zone of its own
    return root


def test_window_sums_packages_and_dram_apart_and_corrects_a_wrap(tree: Path) -> None:
    win = RaplWindow(root=tree, poll_s=0)
    win.begin()
    _set(tree, "intel-rapl:0", 31_000_000)  # +30 J
    _set(tree, "intel-rapl:0:0", 4_500_000)  # +4 J
    _set(tree, "intel-rapl:1", 3_000_000)  # wrapped: 2 J to the top, then 3 J
    win.poll()
    _set(tree, "intel-rapl:1", 8_000_000)  # +5 J more
    _set(tree, "intel-rapl:1:0", 13_000_000)  # +6 J
    _set(tree, "intel-rapl:2", 109_000_000)  # platform +100 J
    zones = {z["zone"]: z for z in win.end()}
    assert zones["intel-rapl:0"]["energy_j"] == pytest.approx(30.0)
    assert zones["intel-rapl:1"]["energy_j"] == pytest.approx(2.0 + 8.0)
    assert zones["intel-rapl:1"]["wraps"] == 1
    assert (zones["intel-rapl:0:0"]["kind"], zones["intel-rapl:0:0"]["package"]) == ("dram", 0)
    assert zones["intel-rapl:2"]["kind"] == "psys" and zones["intel-rapl:2"]["package"] is None


def test_meter_reports_host_energy_beside_the_gpus_never_in_them(tree: Path, tmp_path: Path) -> None:
    backend = SimulatedNvmlBackend(clock=VirtualClock(), n_gpus=1, power_w=lambda g, t: 200.0)
    meter = EnergyMeter([0], {0: "serving"}, 0.05, backend, tmp_path / "power.csv", rapl_root=tree)
    meter.start()
    meter.begin()
    backend.clock.sleep(1.0)  # ten counter steps of the GPU (virtual time; RAPL reads real time)
    _set(tree, "intel-rapl:0", 51_000_000)  # +50 J
    _set(tree, "intel-rapl:1", MAX_UJ - 1_000_000)  # +1 J
    _set(tree, "intel-rapl:0:0", 2_500_000)  # +2 J
    _set(tree, "intel-rapl:1:0", 10_000_000)  # +3 J
    _set(tree, "intel-rapl:2", 1_009_000_000)  # platform +1000 J: not summed with the packages
    meter.end()
    meter.stop()
    sec = meter.section()
    host = sec.host
    assert host is not None and host.available and host.reason is None
    assert host.package_j == pytest.approx(51.0) and host.dram_j == pytest.approx(5.0)
    assert host.duration_s is not None and host.avg_power_w == pytest.approx(56.0 / host.duration_s)
    gpu = sec.gpus[0]
    totals = sec.totals()
    assert totals is not None and gpu.energy_j is not None and totals.energy_j == gpu.energy_j
    # the GPU's joules alone (within a 100 ms counter step), not the host's 56 J, nor the platform's 1000
    assert gpu.energy_j == pytest.approx(200.0 * gpu.duration_s, abs=25.0)


def test_host_energy_is_reported_on_a_run_without_gpus(tree: Path, tmp_path: Path) -> None:
    meter = EnergyMeter([], {}, 0.1, "auto", tmp_path / "power.csv", rapl_root=tree)
    meter.start()
    meter.begin()
    _set(tree, "intel-rapl:0", 11_000_000)
    meter.end()
    meter.stop()
    sec = meter.section()
    assert not sec.available and sec.reason and "no GPUs" in sec.reason
    assert sec.host is not None and sec.host.available and sec.host.package_j == pytest.approx(10.0 + 0.0)


def test_reasons_where_rapl_is_not_readable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(RaplUnavailable, match=r"no .*powercap"):
        discover(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RaplUnavailable, match="no RAPL zones"):
        discover(tmp_path / "empty")
    root = tmp_path / "locked"
    _zone(root, "intel-rapl:0", "package-0", 1)
    # Linux >= 5.10 makes energy_uj 0400 root; the tests run as root, so the denial is faked at the read.
    real_read = Path.read_text

    def denied(self: Path, *args: object, **kwargs: object) -> str:
        if self.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(self))
        return real_read(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", denied)
    with pytest.raises(RaplUnavailable, match="root only"):
        discover(root)
    meter = EnergyMeter([], {}, 0.1, "auto", tmp_path / "power.csv", rapl_root=root)
    meter.begin()
    meter.end()
    host = meter.section().host
    assert host is not None and not host.available and host.package_j is None
    assert host.reason is not None and "CVE-2020-8694" in host.reason
