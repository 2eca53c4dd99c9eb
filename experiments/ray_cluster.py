"""Reaching a Ray cluster (the `cluster` extra): what `--cluster` means, and where a node is.

Only the `--cluster` paths import this module, and it imports Ray only when called: the default install
has no Ray and nothing else changes. `--cluster` takes:
- `auto`: the cluster named by RAY_ADDRESS, else the one `ray start` runs on this machine;
- `local`: a one-node Ray started here and ended with the launcher (for trying the path);
- `HOST:PORT`: a cluster's GCS address (what `ray start --head` prints);
- `ray://HOST:PORT`: through the Ray client (the driver off the cluster).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from types import ModuleType
from typing import Any

RAY_MISSING = "--cluster needs Ray, which the default install leaves out: pip install -e '.[cluster]'"
NAMESPACE = "disagg-testbed"


class ClusterError(RuntimeError):
    """A cluster that cannot be used; the message says what to do next."""


@dataclass(frozen=True, slots=True)
class Node:
    """A live Ray node: its id, reachable address and resources (GPU, CPU, custom)."""

    node_id: str
    address: str
    resources: dict[str, float]


def import_ray() -> ModuleType:
    try:
        import ray
    except ImportError as exc:
        raise ClusterError(RAY_MISSING) from exc
    return ray


def connect(address: str) -> ModuleType:
    """Join the cluster `address` names (see the module docstring) as a driver; returns the ray module."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    target = None if address == "local" else address
    try:
        ray.init(
            address=target,
            namespace=NAMESPACE,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ClusterError(
            f"cannot join the Ray cluster {address!r} ({exc}); start one with `ray start --head` on the "
            "head node (and `ray start --address HEAD:6379` on the others), or use --cluster local"
        ) from exc
    return ray


def live_nodes() -> list[Node]:
    ray = import_ray()
    return [
        Node(n["NodeID"], n["NodeManagerAddress"], dict(n.get("Resources") or {}))
        for n in ray.nodes()
        if n.get("Alive")
    ]


def cluster_address() -> str:
    """The GCS address of the cluster this driver joined (what another driver passes to --cluster)."""
    ray = import_ray()
    return str(ray.get_runtime_context().gcs_address)


def on_node(node_id: str) -> Any:
    """A scheduling strategy that pins an actor to one node (hard: it fails rather than moves)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)
