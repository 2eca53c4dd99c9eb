"""`--cluster`: every vLLM instance as a Ray actor holding its GPUs, on whichever node has them.

`place(specs, run_dir, options)` creates one `InstanceHost` actor per instance (its GPUs, or CPUs on the
CPU build, and the custom resource naming its role's nodes), waits until Ray has put each on a node,
and rewrites the spec for that node: its URL on the node's reachable address, `VLLM_HOST_IP` and the
NIXL side channel on it (not 127.0.0.1), and the GPUs Ray gave it. The returned `RayServer`s behave as
`launch.server.ManagedServer`s do, so `launch.supervise` starts, watches and stops them unchanged.

Stopping: the launcher (the Ray driver) owns the actors; stopping an actor stops its vLLM first, and
each vLLM also dies with its actor's process (Linux's parent-death signal), so no process outlives a
killed driver. `stop RUN_DIR` cannot signal a process on another node: it writes the stop request, and
a `RayServer` counts as ended once that request is there (launch.supervise's protocol), so the
foreground launcher stops every instance through Ray.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.ray_cluster import ClusterError, import_ray, live_nodes
from launch.server import ManagedServer, ServerError, ServerSpec, http_ok
from launch.supervise import stop_requested

CALL_TIMEOUT_S = 60.0
# Runs between the actor and vLLM: vLLM gets SIGTERM when the actor's process dies (PR_SET_PDEATHSIG).
_DEATH_GUARD = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)\n"
    "sys.exit(1) if os.getppid() != int(sys.argv[1]) else os.execv(sys.argv[2], sys.argv[2:])\n"
)


@dataclass
class PlaceOptions:
    """What each instance asks Ray for, from the launchers' cluster flags."""

    gpus_per_instance: int = 0  # 0: the CPU build
    cpus_per_instance: float = 1.0
    role_resources: dict[str, str] = field(default_factory=dict)  # role -> custom resource of its nodes
    env: dict[str, str] = field(default_factory=dict)  # for every instance (UCX_NET_DEVICES, ...)
    place_timeout_s: float = 120.0  # how long an actor may wait for a node with its resources free


@dataclass(frozen=True)
class Placement:
    """Where Ray put one instance."""

    node_id: str
    address: str
    host: str
    gpus: tuple[str, ...]
    actor_pid: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.node_id,
            "node_address": self.address,
            "node_host": self.host,
            "ray_gpus": list(self.gpus),
            "actor_pid": self.actor_pid,
        }


class InstanceHost:
    """The actor's body: one vLLM instance on the actor's node (a ManagedServer there)."""

    def __init__(self, run_dir: str) -> None:
        self.run_dir = run_dir
        self.server: ManagedServer | None = None

    def where(self) -> Placement:
        ray = import_ray()
        return Placement(
            node_id=ray.get_runtime_context().get_node_id(),
            address=ray.util.get_node_ip_address(),
            host=socket.gethostname(),
            gpus=tuple(str(g) for g in ray.get_gpu_ids()),
            actor_pid=os.getpid(),
        )

    def start(self, spec: ServerSpec) -> int:
        """Start vLLM here; its pid (on this node)."""
        if sys.platform.startswith("linux"):
            spec.command_override = [sys.executable, "-c", _DEATH_GUARD, str(os.getpid()), *spec.command()]
        self.server = ManagedServer(spec, self.run_dir)
        # The pid file stays on this node, out of the run directory, which `stop` may read on another.
        self.server.pid_path = Path(tempfile.gettempdir()) / f"testbed-{os.getpid()}-{spec.name}.pid"
        self.server.start()
        assert self.server.proc is not None
        return self.server.proc.pid

    def returncode(self) -> int | None:
        """None while vLLM runs."""
        proc = self.server.proc if self.server else None
        return None if proc is None else proc.poll()

    def log_tail(self, lines: int) -> str:
        return self.server.log_tail(lines) if self.server else ""

    def stop(self, grace_s: float) -> None:
        if self.server is not None:
            self.server.stop(grace_s)


class _Exited:
    """What supervise reads of an ended instance: its exit code."""

    def __init__(self, returncode: int | str) -> None:
        self.returncode = returncode


class RayServer:
    """A vLLM instance in a Ray actor, with ManagedServer's interface (see the module docstring)."""

    def __init__(self, spec: ServerSpec, run_dir: Path, actor: Any, placement: Placement) -> None:
        self.spec, self.run_dir, self.actor, self.placement = spec, Path(run_dir), actor, placement
        self.log_path = self.run_dir / f"{spec.name}.log"  # on the instance's node
        self.proc: _Exited | None = None
        self.pid: int | None = None

    def _call(self, method: str, *args: Any, timeout: float = CALL_TIMEOUT_S) -> Any:
        ray = import_ray()
        return ray.get(getattr(self.actor, method).remote(*args), timeout=timeout)

    def start(self) -> None:
        if http_ok(self.spec.url + "/health", timeout=1.0):
            raise ServerError(f"{self.spec.url} already serves a healthy server; stop it or pick another")
        self.pid = self._call("start", self.spec)

    def alive(self) -> bool:
        if self.actor is None or stop_requested(self.run_dir):
            return False
        try:
            code = self._call("returncode")
        except Exception as exc:  # the actor or its node is gone
            self.proc = _Exited(f"? (its Ray actor failed: {type(exc).__name__})")
            return False
        if code is not None:
            self.proc = _Exited(code)
        return code is None

    def healthy(self) -> bool:
        return http_ok(self.spec.url + "/health")

    def log_tail(self, lines: int = 15) -> str:
        try:
            return str(self._call("log_tail", lines))
        except Exception:
            return ""

    def stop(self, grace_s: float = 20.0) -> None:
        """Stop vLLM through the actor, then end the actor. Safe to call twice."""
        if self.actor is None:
            return
        ray = import_ray()
        # An actor gone already took its vLLM with it (the parent-death signal).
        with contextlib.suppress(Exception):
            self._call("stop", grace_s, timeout=grace_s + 15)
        ray.kill(self.actor)
        self.actor = None


def place(specs: list[tuple[str, ServerSpec]], run_dir: Path, options: PlaceOptions) -> list[RayServer]:
    """An actor per (role, spec) on a node with its resources; each spec rewritten for its node."""
    ray = import_ray()
    actors = []
    for role, spec in specs:
        resources = {options.role_resources[role]: 0.001} if role in options.role_resources else {}
        actor = (
            ray.remote(InstanceHost)
            .options(
                num_cpus=options.cpus_per_instance,
                num_gpus=options.gpus_per_instance,
                resources=resources,
                max_concurrency=1,
            )
            .remote(str(run_dir))
        )
        actors.append((role, spec, actor, resources))
    servers = []
    try:
        for role, spec, actor, resources in actors:
            ready, _ = ray.wait([ref := actor.where.remote()], timeout=options.place_timeout_s)
            if not ready:
                raise ClusterError(_unplaceable(spec.name, role, options, resources))
            placement = ray.get(ref)
            rehost(spec, placement, options)
            servers.append(RayServer(spec, run_dir, actor, placement))
    except BaseException:
        for _, _, actor, _ in actors:
            ray.kill(actor)
        raise
    return servers


def rehost(spec: ServerSpec, placement: Placement, options: PlaceOptions) -> None:
    """The spec as its node runs it: reachable address, KV endpoints on it, Ray's GPUs."""
    spec.host = placement.address
    spec.env["VLLM_HOST_IP"] = placement.address
    if "VLLM_NIXL_SIDE_CHANNEL_HOST" in spec.env:
        spec.env["VLLM_NIXL_SIDE_CHANNEL_HOST"] = placement.address
    spec.env.update(options.env)
    spec.gpu = ",".join(placement.gpus) if options.gpus_per_instance else None


_NOT_SHOWN = {"memory", "object_store_memory", "node:__internal_head__"}


def _unplaceable(name: str, role: str, options: PlaceOptions, resources: dict[str, float]) -> str:
    wants = f"{options.gpus_per_instance} GPU(s), {options.cpus_per_instance:g} CPU(s)"
    if resources:
        wants += f" and the resource {next(iter(resources))!r} (--ray-node-resource {role}=...)"
    have = "; ".join(
        f"{n.address} {n.node_id[:8]}: "
        + ", ".join(
            f"{k}={v:g}"
            for k, v in sorted(n.resources.items())
            if k not in _NOT_SHOWN and not k.startswith("node:")
        )
        for n in live_nodes()
    )
    return (
        f"no node took {name} within {options.place_timeout_s:g} s: it needs {wants} free; the nodes have "
        f"{have} in all (this run's other instances hold some); free some or ask for less (--ray-cpus, ...)"
    )


# -- the launchers' --cluster path ---------------------------------------------------------------------


def cluster_has_gpus(address: str) -> bool:
    """Join the cluster (see experiments.ray_cluster); True when one of its nodes has a GPU."""
    from experiments.ray_cluster import connect

    connect(address)
    return any(n.resources.get("GPU", 0) > 0 for n in live_nodes())


def place_options(args: Any, gpus_per_instance: int) -> PlaceOptions:
    """PlaceOptions from the launchers' cluster flags (launch.cli)."""
    roles: dict[str, str] = {}
    for item in args.ray_node_resource:
        role, _, name = item.partition("=")
        if role not in ("prefill", "decode", "serving") or not name:
            raise ClusterError(
                f"--ray-node-resource {item!r}: use ROLE=NAME, ROLE prefill, decode or serving"
            )
        roles[role] = name
    env = {}
    if args.ucx_net_devices:
        env["UCX_NET_DEVICES"] = args.ucx_net_devices
    if args.nccl_socket_ifname:
        env["NCCL_SOCKET_IFNAME"] = args.nccl_socket_ifname
    return PlaceOptions(gpus_per_instance, args.ray_cpus, roles, env)


def plan_with_placements(plan: dict[str, Any], servers: list[RayServer], address: str) -> dict[str, Any]:
    """The launch plan with each instance's node, address, GPUs and log, and the cluster section that
    `stop` and the runner read."""
    from experiments.ray_cluster import cluster_address

    by_name = {s.spec.name: s for s in servers}
    for role in ("prefill", "decode", "instances"):
        for entry in plan.get(role, []):
            server = by_name.get(entry.get("name"))
            if server is not None:
                entry.update(server.placement.to_dict(), log=f"{server.placement.address}:{server.log_path}")
    options = plan.get("connector_options")
    if isinstance(options, dict) and "side_channel_host" in options:
        options["side_channel_host"] = "each instance's node address"
    plan["cluster"] = {
        "requested": address,
        "address": cluster_address(),
        "driver_pid": os.getpid(),
        "nodes": sorted({s.placement.node_id for s in servers}),
    }
    return plan


def describe(servers: list[RayServer]) -> str:
    """One line per placed instance: where it runs, on which GPUs, where its log is."""
    return "\n".join(
        f"  {s.spec.name} -> node {s.placement.address} ({s.placement.node_id[:8]}, {s.placement.host}), "
        f"GPU {','.join(s.placement.gpus) or 'none (CPU)'}, log {s.placement.address}:{s.log_path}"
        for s in servers
    )


def shutdown() -> None:
    """Leave the cluster (a `--cluster local` Ray ends here); the actors this driver owned end with it."""
    import_ray().shutdown()
