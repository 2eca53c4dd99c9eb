"""What a CPU run can and cannot tell, said from the results themselves (the demo's report and console).

On a CPU-only machine every vLLM instance, the proxy and the load generator share the same few cores, so
a prefill/decode pair competes with itself and its latencies measure that contention, not disaggregation.
`cpu_caveat` detects CPU runs, counts what shared the cores, and states what the runs do show: the
pipeline end to end and the KV that vLLM's own counters saw arrive at the decode instances.
"""

from __future__ import annotations

import os
import socket
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from experiments.schema import RunResult, kind_of_mode

# vLLM's counter of prompt tokens whose KV came through the KV connector (read from --server-metrics).
KV_IN_METRIC = 'vllm:prompt_tokens_by_source_total{source="external_kv_transfer"}'
# Setup kinds whose endpoint is our proxy (one more process on the cores).
PROXY_KINDS = ("xpyd", "replicas")
HEADLINE = "A CPU run shows the pipeline, not performance."


def is_cpu_run(result: RunResult) -> bool:
    """Served without a GPU: our launcher's plan placed no instance on a GPU, or the host had none."""
    setup = result.metadata.serving_setup
    if setup is not None and setup.instances and (setup.source or "").startswith("launch plan"):
        return not setup.gpus  # the launchers record each instance's GPU; none on the CPU path
    inventory = result.metadata.gpu_inventory
    return not (inventory.available and inventory.gpus)


def host_cores(result: RunResult) -> int | None:
    """CPU cores available here, when `result` was measured on this host (results do not record it)."""
    if result.metadata.hostname != socket.gethostname():
        return None
    return len(os.sched_getaffinity(0))


def kv_tokens_received(result: RunResult) -> int | None:
    """Prompt tokens whose KV arrived through the connector, summed over the servers (None: not read)."""
    values = [m.deltas[KV_IN_METRIC] for m in result.server_metrics.values() if KV_IN_METRIC in m.deltas]
    return round(sum(values)) if values else None


@dataclass(frozen=True)
class Sharing:
    """What ran on the cores during one run."""

    label: str
    instances: int | None  # vLLM instances (None: not recorded)
    proxy: bool

    def text(self) -> str:
        parts = ["an unrecorded number of vLLM instances" if self.instances is None else _n(self.instances)]
        if self.proxy:
            parts.append("the proxy")
        parts.append("the load generator")
        return f"{self.label}: {', '.join(parts[:-1])} and {parts[-1]}"


def _n(instances: int) -> str:
    return "1 vLLM instance" if instances == 1 else f"{instances} vLLM instances"


def sharing(result: RunResult) -> Sharing:
    setup = result.metadata.serving_setup
    if setup is not None and setup.num_instances:
        return Sharing(setup.name, setup.num_instances, setup.kind in PROXY_KINDS)
    servers = len(result.server_metrics) or None  # older results: one metrics URL per instance
    return Sharing(result.metadata.setup_name, servers, kind_of_mode(result.metadata.mode) in PROXY_KINDS)


def cpu_caveat(
    results: Sequence[RunResult], cores: int | None = None, gpu_report: str | Path | None = None
) -> list[str]:
    """Paragraphs for the top of a report over `results` when any ran on CPU (empty list: none did).

    `cores`: the CPU cores the runs shared (None: unknown); `gpu_report`: where measured GPU results are.
    """
    cpu = [r for r in results if is_cpu_run(r)]
    if not cpu:
        return []
    core_text = (
        f"the same {cores} CPU cores" if cores else "the same CPU cores (their count was not recorded)"
    )
    who = "; ".join(sharing(r).text() for r in cpu)
    which = "These runs" if len(cpu) == len(results) else "Some of these runs"
    paras = [
        f"{HEADLINE} {which} served on CPU, without a GPU: everything in a run shared {core_text} ({who}), "
        "so the processes slow each other down and the latencies measure them competing for cores, "
        "not disaggregation."
    ]
    shows = "What it shows: the whole pipeline runs end to end with the commands used on GPUs: a seeded "
    if any(_is_pd(r) for r in cpu):
        shows += "workload, the streaming client, the proxy, real vLLM prefill and decode instances and KV "
        shows += "moving between them."
    else:
        shows += "workload, the streaming client and a real vLLM instance."
    if kv := [(sharing(r).label, n) for r in cpu if (n := kv_tokens_received(r))]:
        moved = "; ".join(f"{label}: {n:,} prompt tokens" for label, n in kv)
        shows += f" vLLM's own counter on the decode side saw prompt KV arrive from prefill ({moved})."
    paras.append(shows)
    paras.append("What it does not show: performance. " + _spread(cpu) + _energy(cpu))
    if gpu_report is not None:
        paras.append(f"For performance and energy, read the measured 2 x H200 comparison: {gpu_report}")
    return paras


def _is_pd(result: RunResult) -> bool:
    return result.metadata.setup_kind == "xpyd"


def _spread(results: Sequence[RunResult]) -> str:
    ttft = [(r.metadata.setup_name, r.summary.ttft_ms.p50) for r in results if r.summary is not None]
    ttft = [(label, v) for label, v in ttft if v is not None and v > 0]
    if len(ttft) < 2:
        return ""
    low, high = min(ttft, key=lambda t: t[1]), max(ttft, key=lambda t: t[1])
    return (
        f"TTFT p50 ranges from {low[1]:,.0f} ms ({low[0]}) to {high[1]:,.0f} ms ({high[0]}), "
        f"{high[1] / low[1]:.1f}x apart, mostly from core contention. "
    )


def _energy(results: Sequence[RunResult]) -> str:
    if any(r.energy is not None and r.energy.available for r in results):
        return ""
    return "No energy either: there is no GPU to measure."


def markdown(paragraphs: Sequence[str]) -> str:
    """The caveat as a markdown block quote (its headline bold)."""
    if not paragraphs:
        return ""
    first, *rest = paragraphs
    first = first.replace(HEADLINE, f"**{HEADLINE}**", 1)
    return "\n".join([f"> {first}", *(f">\n> {p}" for p in rest)]) + "\n"


def terminal(paragraphs: Sequence[str], width: int = 100) -> str:
    """The caveat for the console: wrapped paragraphs (paths kept whole), the first marked as a note."""
    indent = " " * len("NOTE: ")
    return "\n\n".join(
        textwrap.fill(
            p,
            width,
            initial_indent="NOTE: " if i == 0 else indent,
            subsequent_indent=indent,
            break_long_words=False,
            break_on_hyphens=False,
        )
        for i, p in enumerate(paragraphs)
    )


def add_to_report(report: Path, paragraphs: Sequence[str]) -> None:
    """Insert the caveat right under the report's title (the first line)."""
    if not paragraphs:
        return
    title, _, body = report.read_text(encoding="utf-8").partition("\n")
    report.write_text(f"{title}\n\n{markdown(paragraphs)}{body}", encoding="utf-8")
