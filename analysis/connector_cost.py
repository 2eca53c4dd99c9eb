"""What the KV connector costs on the decode side: the split of the decode leg's first chunk, the KV
bytes per request and the transfer rate.

The decode leg's first chunk (proxy: decode request sent -> first chunk back) holds D's queue time, D's
first step (vLLM's prefill time on D: first scheduled -> first token), D's front end and the HTTP outside D.
Where the KV transfer sits depends on the connector:
- NIXL (vLLM >= 0.24) pulls the KV asynchronously while the request waits on D (vLLM counts that wait
  as queue time) and exports its transfers: `vllm:nixl_xfer_time_seconds`, `vllm:nixl_post_time_seconds`,
  `vllm:nixl_bytes_transferred`, `vllm:nixl_num_descriptors` (histograms, one observation per transfer)
  and the counters `vllm:nixl_num_failed_transfers`, `vllm:nixl_num_failed_notifications`,
  `vllm:nixl_num_kv_expired_reqs`. Transfer time and bytes are then measured.
- P2P NCCL (vLLM 0.23) loads the KV synchronously inside D's first step and exports nothing about it;
  the transfer is inferred as D's prefill time minus one decode step (D's mean inter-token gap), and the
  bytes are computed from the model shape: 2 x layers x KV heads x head dim x dtype bytes per token.
Each inferred or computed number is labelled so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from analysis.prometheus import counter, histogram
from analysis.runs import NA, Run
from analysis.server_view import InstanceView, PhaseStats, role_views
from experiments.model_dir import ModelShape, shape_config, shape_from_config

NVLINK_GBPS = 300.0  # 1 GiB GPU1 -> GPU0 NIXL READ on 2 x H200, measured by the shared NIXL recipe
COMPUTED = "computed from the model shape, not measured"
INFERRED = "inferred: D prefill time - D mean inter-token gap, not measured"
NIXL = "vllm:nixl_"


# Known shapes for when the model's config.json is not on the analysis machine (matched on the path's
# last part, lower case).
KNOWN_SHAPES: dict[str, ModelShape] = {
    "llama-3.1-8b": ModelShape(
        layers=32,
        kv_heads=8,
        head_dim=128,
        dtype_bytes=2,
        source="known Llama-3.1-8B shape (config.json not found)",
    ),
    **{
        name: shape_from_config(shape_config(name), f"known {name} shape (config.json not found)")
        for name in ("qwen2.5-32b", "llama-3.1-70b-fp8", "qwen3-30b-a3b")
    },
}


def model_shape(run: Run) -> ModelShape | NA:
    """The served model's KV shape: its config.json where the model path exists here, else a known shape."""
    setup = run.metadata.serving_setup
    kv_dtype = None
    paths = [run.metadata.model, run.config.model]
    if setup is not None:
        for inst in setup.instances:
            paths.append(str(inst.serve_args.get("model") or "") or None)
            kv_dtype = kv_dtype or inst.engine_log.get("kv_cache_dtype")
    for p in filter(None, paths):
        config = Path(p) / "config.json"
        if config.is_file():
            return shape_from_config(json.loads(config.read_text()), f"{config}", kv_dtype)
    for p in filter(None, paths):
        key = Path(p).name.lower()
        for known, shape in KNOWN_SHAPES.items():
            if known in key:
                return shape
    return NA(f"model config not found ({', '.join(filter(None, paths)) or 'no model path recorded'})")


@dataclass(frozen=True)
class NixlStats:
    """NIXL's transfer metrics on one instance over a run (times in ms)."""

    transfers: float
    xfer_ms: float | None
    xfer_p90_ms: float | None
    post_ms: float | None
    bytes_total: float
    bytes_per_transfer: float | None
    descriptors: float | None
    failed_transfers: float
    failed_notifications: float
    kv_expired: float

    @property
    def gbps(self) -> float | None:
        """Bytes over summed transfer time (GB/s), as vLLM's own log line computes its throughput."""
        if self.xfer_ms is None or not self.transfers:
            return None
        seconds = self.xfer_ms * self.transfers / 1000.0
        return self.bytes_total / seconds / 1e9 if seconds > 0 else None


def nixl_stats(deltas: dict[str, float]) -> NixlStats | None:
    """NIXL's series from one instance's deltas; None when the instance stored none."""
    if not any(k.startswith(NIXL) for k in deltas):
        return None
    xfer = histogram(deltas, "vllm:nixl_xfer_time_seconds")
    post = histogram(deltas, "vllm:nixl_post_time_seconds")
    size = histogram(deltas, "vllm:nixl_bytes_transferred")
    descs = histogram(deltas, "vllm:nixl_num_descriptors")
    p90 = xfer.quantile(0.9) if xfer is not None else None
    return NixlStats(
        transfers=xfer.count if xfer is not None else 0.0,
        xfer_ms=None if xfer is None or xfer.mean is None else xfer.mean * 1000.0,
        xfer_p90_ms=None if p90 is None else p90.value * 1000.0,
        post_ms=None if post is None or post.mean is None else post.mean * 1000.0,
        bytes_total=size.sum if size is not None else 0.0,
        bytes_per_transfer=size.mean if size is not None else None,
        descriptors=descs.mean if descs is not None else None,
        failed_transfers=counter(deltas, "vllm:nixl_num_failed_transfers_total") or 0.0,
        failed_notifications=counter(deltas, "vllm:nixl_num_failed_notifications_total") or 0.0,
        kv_expired=counter(deltas, "vllm:nixl_num_kv_expired_reqs_total") or 0.0,
    )


Value = float | NA | None


@dataclass
class FirstChunkSplit:
    """The decode leg's first chunk of a P/D run split into its parts (means, ms), with the KV cost."""

    connector: str
    first_chunk_ms: float | None
    d_queue_ms: float | None
    kv_transfer_ms: Value
    transfer_source: str
    queue_beside_transfer_ms: Value  # D's queue time not covered by the transfer (NIXL)
    first_step_ms: Value
    d_front_end_ms: float | None
    outside_d_ms: float | None
    kv_bytes_per_request: Value
    bytes_source: str
    gbps: Value
    nixl: NixlStats | None = None
    scatter: Value = None  # NIXL descriptors per transfer over layers x blocks moved (0..1)
    notes: list[str] = field(default_factory=list)

    @property
    def nvlink_share(self) -> float | None:
        """Achieved rate over the NVLink figure (0..1)."""
        return self.gbps / NVLINK_GBPS if isinstance(self.gbps, float) else None


def _connector(run: Run) -> str:
    setup = run.metadata.serving_setup
    if setup is not None and setup.connector:
        return setup.connector
    stages = [r.stages for r in run.result.records if r.stages is not None and r.stages.connector]
    return stages[0].connector or "unknown" if stages else "unknown"


def _transfer_nixl(run: Run) -> tuple[NixlStats | None, str]:
    """NIXL stats of the side that moves the KV, and that side's role.

    Pull mode: D reads, so D's series hold the transfers (P's only count expiries). Push mode: P writes,
    so the transfers are on P's series and D has none.
    """
    deltas = {url: m.deltas for url, m in run.result.server_metrics.items() if not m.error}
    found = [
        (stats, role)
        for role in ("decode", "prefill")
        for v in role_views(run.result, role)
        if (stats := nixl_stats(deltas.get(v.url, {}))) is not None
    ]
    moved = [(stats, role) for stats, role in found if stats.transfers]
    return (moved or found or [(None, "")])[0]


def block_scatter(run: Run, stats: NixlStats, shape: ModelShape | NA) -> Value:
    """How scattered the moved blocks were: NIXL's descriptors per transfer over layers x blocks.

    vLLM asks for one region per layer and block; NIXL merges adjacent ones. Near 0: the blocks were
    contiguous (a fresh pool); 1: no two were adjacent (a pool that many requests have shuffled).
    """
    setup = run.metadata.serving_setup
    sizes = {i.settings.block_size for i in setup.instances if i.settings.block_size} if setup else set()
    if isinstance(shape, NA) or len(sizes) != 1 or not stats.descriptors or not stats.bytes_per_transfer:
        return NA("needs the model shape, one block size and NIXL's descriptor and byte counts")
    blocks = stats.bytes_per_transfer / (shape.bytes_per_token * sizes.pop())
    return stats.descriptors / (shape.layers * blocks) if blocks else NA("no blocks moved")


def _tokens_per_request(d: InstanceView, run: Run) -> tuple[float | None, str]:
    if d.external_kv_tokens and d.requests:
        return d.external_kv_tokens / d.requests, "D's prompt tokens from external KV"
    tokens = [r.input_tokens for r in run.result.records if r.measured and r.input_tokens is not None]
    return (sum(tokens) / len(tokens), "mean prompt tokens") if tokens else (None, "no token counts")


def first_chunk_split(run: Run) -> FirstChunkSplit | None:
    """The split for a P/D run with stage timings and a decode instance's metrics; None otherwise."""
    stages = run.stages
    decode = role_views(run.result, "decode")
    if stages is None or stages.prefill_ms.count == 0 or not decode:
        return None
    d = decode[0]
    notes = [f"{len(decode)} decode instances: the first ({d.label}) is shown"] if len(decode) > 1 else []
    first = stages.decode_first_chunk_ms.mean
    queue, prefill, ttft = d.mean("queue"), d.mean("prefill"), d.mean("ttft")
    itl = d.phase("itl")
    step = itl.mean if isinstance(itl, PhaseStats) else None
    outside = None if first is None or ttft is None else first - ttft
    nixl, mover = _transfer_nixl(run)
    shape = model_shape(run)
    tokens, token_source = _tokens_per_request(d, run)
    split = FirstChunkSplit(
        connector=_connector(run),
        first_chunk_ms=first,
        d_queue_ms=queue,
        kv_transfer_ms=None,
        transfer_source="",
        queue_beside_transfer_ms=None,
        first_step_ms=prefill,
        d_front_end_ms=d.front_end_ms,
        outside_d_ms=outside,
        kv_bytes_per_request=None,
        bytes_source="",
        gbps=None,
        nixl=nixl,
        notes=notes,
    )
    if nixl is not None and nixl.xfer_ms is not None:
        split.kv_transfer_ms = nixl.xfer_ms
        split.transfer_source = "measured (vllm:nixl_xfer_time_seconds, mean per transfer)"
        split.queue_beside_transfer_ms = None if queue is None else queue - nixl.xfer_ms
        requests = d.requests or nixl.transfers
        split.kv_bytes_per_request = nixl.bytes_total / requests if requests else None
        split.bytes_source = "measured (vllm:nixl_bytes_transferred)"
        split.gbps = nixl.gbps
        split.scatter = block_scatter(run, nixl, shape)
        if mover == "prefill":
            split.notes.append("NIXL transfers recorded by the prefill side (push: P writes into D)")
        if d.requests and abs(nixl.transfers - d.requests) > 0.5:
            split.notes.append(f"{nixl.transfers:g} NIXL transfers for {d.requests:g} decode requests")
        if nixl.failed_transfers or nixl.failed_notifications:
            failed = f"{nixl.failed_transfers:g} transfers, {nixl.failed_notifications:g} notifications"
            split.notes.append(f"NIXL failures: {failed}")
        return split
    why = "the connector exports no transfer metrics" if nixl is None else "NIXL stored no transfer times"
    split.notes.append(f"{split.connector}: {why}; its KV load is inside D's first step")
    if prefill is not None and step is not None:
        split.kv_transfer_ms = max(prefill - step, 0.0)
        split.transfer_source = INFERRED
        split.first_step_ms = step
    else:
        split.kv_transfer_ms = NA("no D prefill time or inter-token gap stored")
    if isinstance(shape, NA) or tokens is None:
        split.kv_bytes_per_request = shape if isinstance(shape, NA) else NA(token_source)
        return split
    split.kv_bytes_per_request = tokens * shape.bytes_per_token
    per_token = f"{shape.bytes_per_token:,} B/token ({shape.source})"
    split.bytes_source = f"{COMPUTED}: {per_token} x {tokens:,.0f} tokens ({token_source})"
    if isinstance(split.kv_transfer_ms, float) and split.kv_transfer_ms > 0:
        split.gbps = split.kv_bytes_per_request / (split.kv_transfer_ms / 1000.0) / 1e9
    return split
