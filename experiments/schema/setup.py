"""What served the endpoint of a run (experiments.serving_setup reads it; nothing is typed by hand).

kind: "single" (one vLLM instance), "replicas" (independent instances behind the pass-through proxy),
"xpyd" (x prefill and y decode instances behind our P/D proxy with a KV connector), "unknown" (the
proxy said something else). The label names the setup in reports: "1 instance", "2 replicas",
"1P1D p2p_nccl GET". Kinds, labels and forms are spelled in experiments.schema.vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from experiments.schema.base import OMIT_EMPTY
from experiments.schema.vocabulary import SetupForm, SetupKind, form_of

Scalar = str | int | float | bool | None


@dataclass(slots=True, kw_only=True)
class InstanceSettings:
    """The engine settings worth a column: from the serve command, else the engine log or /metrics."""

    gpu_memory_utilization: float | None = None
    max_num_batched_tokens: int | None = None
    max_num_seqs: int | None = None
    block_size: int | None = None
    enable_prefix_caching: bool | None = None
    max_model_len: int | None = None


@dataclass(slots=True, kw_only=True)
class Instance:
    """One vLLM instance: its role, where it ran, its version and settings, and the raw sources."""

    name: str | None = None
    role: str = "serving"  # prefill | decode | serving
    url: str | None = None
    gpu: str | None = None  # CUDA_VISIBLE_DEVICES of the instance
    node: str | None = field(default=None, metadata=OMIT_EMPTY)  # Ray node id (--cluster runs only)
    node_address: str | None = field(default=None, metadata=OMIT_EMPTY)  # that node's reachable address
    vllm_version: str | None = None
    kv_transfer_config: dict[str, Any] | None = None
    settings: InstanceSettings = field(default_factory=InstanceSettings)
    engine_log: dict[str, Any] = field(default_factory=dict)  # effective settings the engine logged
    cache_config: dict[str, str] = field(default_factory=dict)  # labels of vllm:cache_config_info
    serve_args: dict[str, Scalar] = field(default_factory=dict)  # every --flag of the serve command


@dataclass(slots=True, kw_only=True)
class ServingSetup:
    """The serving side of a run: kind, label, connector and its options, instances per role."""

    kind: SetupKind
    label: str | None = None
    connector: str | None = None
    connector_options: dict[str, Any] | None = None
    select: str | None = None  # the proxy's instance selection policy
    policy: str | None = None  # the proxy's per-request path policy (split, local, threshold:N, load...)
    num_instances: int = 0
    num_prefill: int | None = None
    num_decode: int | None = None
    gpus: list[str] = field(default_factory=list)
    num_gpus: int | None = None
    vllm_versions: list[str] = field(default_factory=list)
    instances: list[Instance] = field(default_factory=list)
    idle_instances: list[str] = field(default_factory=list)  # launched but not driven
    source: str | None = None  # where this came from (launch plan, proxy /setup, the server)
    cluster: str | None = field(default=None, metadata=OMIT_EMPTY)  # the Ray cluster (--cluster runs only)
    server_reported: dict[str, Any] | None = None  # the endpoint's /version and /v1/models
    proxy_setup: dict[str, Any] | None = None  # the proxy's GET /setup, when that was the source

    @property
    def name(self) -> str:
        """The setup's name in reports (its label, else its kind)."""
        return self.label or self.kind

    @property
    def form(self) -> SetupForm | None:
        """Its planner form (1P1D, replicas:2, single); None when its counts do not tell."""
        return form_of(self.kind, self.num_instances, self.num_prefill, self.num_decode)

    def role(self, role: str) -> list[Instance]:
        return [i for i in self.instances if i.role == role]
