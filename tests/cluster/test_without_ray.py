"""The default install has no Ray: nothing imports it without --cluster, --cluster without it is a
one-line error that says what to install, and the cluster flags are refused where they cannot work."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from disagg.__main__ import main as disagg_main
from traditional.__main__ import main as traditional_main

ROOT = Path(__file__).resolve().parents[2]
BLOCK_RAY = "import sys; sys.modules['ray'] = None\n"  # `import ray` raises ImportError, as uninstalled


def _python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_ray_is_the_cluster_extra_and_not_a_base_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not any(d.lower().startswith("ray") for d in project["dependencies"])
    assert [d for d in project["optional-dependencies"]["cluster"] if d.startswith("ray")] == ["ray>=2.50,<3"]
    for script in ("setup.sh",):  # what CI installs: the cluster extra with the CPU build
        assert '".[cpu,dev,cluster]"' in (ROOT / script).read_text()


def test_nothing_imports_ray_without_the_option(tmp_path: Path) -> None:
    """Launchers, their plans, the runner and even the cluster modules themselves import no Ray."""
    code = (
        "import sys, argparse\n"
        "import run_experiment, experiments.runner, disagg.__main__, traditional.__main__\n"
        "import launch.ray_placement, experiments.cluster_energy, experiments.ray_cluster, monitor.node\n"
        "from disagg.cli import build_parser\nfrom disagg.plan import plan\n"
        "plan(build_parser().parse_args(['--cpu', '--run-dir', sys.argv[1]]), [])\n"
        "print('ray' in sys.modules)\n"
    )
    proc = _python(code, str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


@pytest.mark.parametrize("module", ["disagg", "traditional"])
def test_cluster_without_ray_says_what_to_install(module: str, tmp_path: Path) -> None:
    run = f"import runpy; sys.argv = ['{module}', *sys.argv[1:]]; "
    run += f"runpy.run_module('{module}', run_name='__main__')"
    proc = _python(BLOCK_RAY + run, "--cpu", "--cluster", "local", "--run-dir", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: --cluster needs Ray, which the default install leaves out: pip install -e '.[cluster]'"
    )
    assert not (tmp_path / "launch.json").exists()


def test_cluster_flags_are_refused_where_they_cannot_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = ["--cpu", "--run-dir", str(tmp_path)]
    assert disagg_main([*run_dir, "--ucx-net-devices", "mlx5_0:1"]) == 2
    assert capsys.readouterr().err == "error: --ucx-net-devices apply with --cluster only\n"
    assert traditional_main([*run_dir, "--cluster", "auto", "--detach"]) == 2
    assert "--detach does not apply with --cluster" in capsys.readouterr().err
    assert disagg_main([*run_dir, "--cluster", "auto", "--discovery-port", "30001"]) == 2
    assert "--discovery-port does not apply with --cluster" in capsys.readouterr().err
    assert not (tmp_path / "launch.json").exists()
