"""KV across nodes, as the launcher configures it (no GPU here): once Ray has placed an instance, its URL,
VLLM_HOST_IP and NIXL side channel are on its node's address, not 127.0.0.1, the chosen interfaces go to
every instance, and the proxy names P2P NCCL peers by node address."""

from __future__ import annotations

from pathlib import Path

import pytest

from disagg.cli import build_parser
from disagg.plan import plan, proxy_command
from experiments.ray_cluster import ClusterError
from launch.ray_placement import Placement, place_options, rehost


def _on(address: str) -> Placement:
    return Placement(node_id="n-" + address, address=address, host="h", gpus=("3",), actor_pid=1)


def _args(tmp_path: Path, *argv: str):
    return build_parser().parse_args(["--cpu", "--run-dir", str(tmp_path), *argv])


def test_nixl_side_channel_and_ucx_follow_the_node(tmp_path: Path) -> None:
    args = _args(tmp_path, "--connector", "nixl", "--ucx-tls", "rc,cuda_copy,tcp", "--cluster", "auto")
    args.ucx_net_devices = "mlx5_0:1"
    run = plan(args, [])
    options = place_options(args, gpus_per_instance=1)
    rehost(run.prefill[0], _on("10.0.0.1"), options)
    rehost(run.decode[0], _on("10.0.0.2"), options)
    p, d = run.prefill[0], run.decode[0]
    assert (p.url, d.url) == ("http://10.0.0.1:8100", "http://10.0.0.2:8200")
    assert p.env["VLLM_NIXL_SIDE_CHANNEL_HOST"] == p.env["VLLM_HOST_IP"] == "10.0.0.1"
    assert d.env["VLLM_NIXL_SIDE_CHANNEL_HOST"] == d.env["VLLM_HOST_IP"] == "10.0.0.2"
    assert d.env["VLLM_NIXL_SIDE_CHANNEL_PORT"] == "5700"  # the ports stay the plan's
    assert p.env["UCX_NET_DEVICES"] == d.env["UCX_NET_DEVICES"] == "mlx5_0:1"
    assert p.env["UCX_TLS"] == "rc,cuda_copy,tcp"
    assert p.gpu == "3" and p.environment()["CUDA_VISIBLE_DEVICES"] == "3"  # the GPU Ray gave it
    assert "--host 10.0.0.1 --port 8100" in " ".join(p.command())


def test_the_proxy_names_p2p_nccl_peers_by_node_address(tmp_path: Path) -> None:
    args = _args(tmp_path, "--connector", "p2p_nccl", "--cluster", "auto", "--nccl-socket-ifname", "ib0")
    run = plan(args, [])
    assert "@127.0.0.1:21001" in " ".join(run.proxy)  # planned on one host
    options = place_options(args, gpus_per_instance=1)
    rehost(run.prefill[0], _on("10.0.0.1"), options)
    rehost(run.decode[0], _on("10.0.0.2"), options)
    cmd = proxy_command(args, run.connector, {"prefill": run.prefill, "decode": run.decode}, run.run_dir)
    assert cmd[cmd.index("--prefill") + 1] == "http://10.0.0.1:8100@10.0.0.1:21001"
    assert cmd[cmd.index("--decode") + 1] == "http://10.0.0.2:8200@10.0.0.2:22001"
    assert run.decode[0].env["NCCL_SOCKET_IFNAME"] == "ib0"
    assert run.decode[0].env["VLLM_HOST_IP"] == "10.0.0.2"  # where its ZMQ/NCCL endpoint binds


def test_the_cpu_build_holds_no_gpu_and_roles_map_to_node_resources(tmp_path: Path) -> None:
    args = _args(tmp_path, "--cluster", "auto", "--ray-node-resource", "decode=big", "--ray-cpus", "2")
    options = place_options(args, gpus_per_instance=0)
    assert (options.role_resources, options.cpus_per_instance) == ({"decode": "big"}, 2.0)
    run = plan(args, [])
    rehost(run.prefill[0], _on("10.0.0.1"), options)
    assert run.prefill[0].gpu is None and run.prefill[0].environment()["CUDA_VISIBLE_DEVICES"] == ""
    args.ray_node_resource = ["gpu-box"]
    with pytest.raises(ClusterError, match="use ROLE=NAME"):
        place_options(args, 0)
