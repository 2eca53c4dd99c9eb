"""One experiment: workload -> arrivals -> streaming client -> records + summary (+ energy) on disk."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import orjson

from experiments import provenance, server_metrics, serving_setup
from experiments.arrivals import schedule
from experiments.attribution import attribute_run
from experiments.client import ClientConfig, make_session, run_closed_loop, run_open_loop
from experiments.energy import EnergyMeter
from experiments.metrics import compute_summary, stage_summary
from experiments.model_dir import load_tokenizer
from experiments.progress import LiveProgress
from experiments.schema import (
    MODES,
    WORKLOADS,
    Record,
    ResultWriter,
    RunConfig,
    RunMetadata,
    RunWarning,
    ServerMetrics,
    ServingSetup,
    TraceInfo,
    WorkloadConfig,
)
from experiments.schema.result import Status
from experiments.schema.run_warning import ATTRIBUTION, PREFIX_CACHE
from experiments.server_tokenizer import ServerTokenizer, TokenizerUnavailable, server_tokenizer
from experiments.timing_checks import client_timing_warnings, steady_state_warning
from experiments.traces import TraceReplay, select_trace, trace_specs
from experiments.workloads import (
    RequestSpec,
    TokenCounter,
    fixed_workload,
    random_workload,
    sharegpt_workload,
)

__all__ = ["MODES", "WORKLOADS", "ExperimentError", "RunConfig", "WorkloadConfig", "run"]


class ExperimentError(Exception):
    """A problem with the input or the endpoint, reported as one line."""


def fetch_models(endpoint: str, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The endpoint's /v1/models; one clear error when it is unreachable or not OpenAI-compatible."""
    url = endpoint.rstrip("/") + "/v1/models"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            data = orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise ExperimentError(
            f"endpoint {url} answered HTTP {exc.code}; is it an OpenAI-compatible server?"
        ) from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ExperimentError(
            f"endpoint {endpoint} is unreachable ({reason}); start a server first "
            "(traditional/start_vllm_server.sh or ./start_disaggregated_servers.sh) or pass --endpoint"
        ) from exc
    except orjson.JSONDecodeError as exc:
        raise ExperimentError(
            f"endpoint {url} did not return JSON; is it an OpenAI-compatible server?"
        ) from exc
    models = data.get("data") if isinstance(data, dict) else None
    if not models:
        raise ExperimentError(f"endpoint {url} lists no models")
    return list(models)


def trace_replay(cfg: WorkloadConfig, n: int | None) -> TraceReplay:
    """The trace replay a workload config asks for (`n` rows at most)."""
    return TraceReplay(
        time_scale=cfg.trace_time_scale if cfg.trace_rate is None else None,
        rate=cfg.trace_rate,
        start_s=cfg.trace_start_s,
        duration_s=cfg.trace_duration_s,
        first_row=cfg.trace_first_row,
        count=n,
        max_model_len=cfg.max_model_len,
        overlength=cfg.overlength,
    )


def build_workload(cfg: WorkloadConfig, tokenizer: TokenCounter, n: int, seed: int) -> list[RequestSpec]:
    """The specs of a random, fixed or ShareGPT workload (trace replays: `trace_specs`)."""
    if cfg.kind == "random":
        return random_workload(tokenizer, n, cfg.input_len, cfg.output_len, seed)
    if cfg.kind == "fixed":
        in_len = None if cfg.prompt else cfg.input_len
        if isinstance(in_len, tuple):
            raise ExperimentError("a fixed workload takes one --input-len, not a range")
        return fixed_workload(tokenizer, n, cfg.prompt, in_len, cfg.output_len, seed)
    if cfg.kind == "sharegpt":
        if not cfg.dataset:
            raise ExperimentError("--workload sharegpt needs --dataset PATH (a ShareGPT JSON file)")
        out_len = cfg.output_len if isinstance(cfg.output_len, int) else None
        return sharegpt_workload(cfg.dataset, tokenizer, n, seed, out_len)
    raise ExperimentError(f"unknown workload {cfg.kind!r}; choose one of {', '.join(WORKLOADS)}")


def served_max_model_len(models: list[dict[str, Any]], model: str) -> int | None:
    """The context the endpoint serves `model` with (vLLM's /v1/models `max_model_len`), if it says."""
    entry = next((m for m in models if m.get("id") == model), {})
    value = entry.get("max_model_len")
    return int(value) if isinstance(value, int) and value > 0 else None


def _workload(
    cfg: WorkloadConfig, tokenizer: TokenCounter, n_warm: int, max_model_len: int | None
) -> tuple[list[RequestSpec], list[RequestSpec], TraceInfo | None]:
    """(measured specs, warm-up specs, trace info): a trace's warm-up requests are its first rows with
    other prompts (so that the prefix cache does not serve them to the measured ones)."""
    seed, n = cfg.seed, cfg.num_requests
    if cfg.kind != "trace":
        warm = build_workload(cfg, tokenizer, n_warm, seed + 1_000_003) if n_warm else []
        return build_workload(cfg, tokenizer, n, seed), warm, None
    if not cfg.dataset:
        raise ExperimentError("--workload trace needs --dataset PATH (a CSV or JSONL trace)")
    replay = trace_replay(cfg, n)
    if replay.max_model_len is None and max_model_len is not None:
        replay = dataclasses.replace(replay, max_model_len=max_model_len)
    selection = select_trace(cfg.dataset, replay)
    warm = trace_specs(selection, tokenizer, seed + 1_000_003, count=n_warm) if n_warm else []
    return trace_specs(selection, tokenizer, seed), warm, selection.info


def _energy_meter(cfg: RunConfig, setup: ServingSetup, csv_path: Path) -> EnergyMeter:
    """The monitor here, or with a setup placed through Ray one on each of its nodes (the GPUs its
    instances hold there, not --gpu-ids)."""
    if setup.cluster is None:
        return EnergyMeter(
            cfg.gpu_ids,
            cfg.gpu_roles,
            cfg.monitor_interval_s,
            cfg.monitor_backend,
            csv_path,
            counter_every_s=cfg.monitor_counter_every_s,
        )
    from experiments.cluster_energy import ClusterEnergyMeter

    return ClusterEnergyMeter(setup, cfg.monitor_interval_s, cfg.monitor_backend, csv_path)


def _run_dir(cfg: RunConfig) -> Path:
    name = cfg.run_name or "-".join(p for p in (time.strftime("%Y%m%d-%H%M%S"), cfg.mode, cfg.tag) if p)
    run_dir = cfg.output_dir / name
    n = 1
    while run_dir.exists():
        n += 1
        run_dir = cfg.output_dir / f"{name}-{n}"
    return run_dir


def _resolve_tokenizer(cfg: RunConfig, models: list[dict[str, Any]]) -> tuple[str, str]:
    model = cfg.model or str(models[0]["id"])
    if cfg.model and cfg.model not in {m.get("id") for m in models}:
        raise ExperimentError(f"endpoint serves {[m.get('id') for m in models]}, not {cfg.model!r}")
    entry = next(m for m in models if m.get("id") == model)
    tok = cfg.tokenizer or str(entry.get("root") or model)
    return model, tok


def open_tokenizer(
    cfg: RunConfig, tok_path: str, model: str, setup: ServingSetup
) -> tuple[TokenCounter, str]:
    """(tokenizer, source): the local one at `tok_path` when this machine can load it ("local"), else the
    /tokenize of the endpoint or of the instances behind it (their URL)."""
    local_error = f"{tok_path!r} is not on this machine"
    if Path(tok_path).exists():
        try:
            return load_tokenizer(tok_path), "local"
        except Exception as exc:  # e.g. no tokenizer.json and no transformers (the base install)
            local_error = f"cannot load the tokenizer from {tok_path!r} ({exc})"
    urls = [cfg.endpoint, *serving_setup.instance_urls(setup), *cfg.server_metrics_urls]
    try:
        tok = server_tokenizer(urls, model)
    except TokenizerUnavailable as exc:
        raise ExperimentError(
            f"{local_error}, and {exc}; pass --tokenizer DIR (a local copy of the model's tokenizer files)"
        ) from exc
    print(f"tokenizer: {local_error}; counting prompt tokens with {tok.name}", file=sys.stderr)
    return tok, tok.url


async def _drive(
    cfg: RunConfig,
    ccfg: ClientConfig,
    warm: list[RequestSpec],
    specs: list[RequestSpec],
    offsets: list[float | None],
    writer: ResultWriter,
    meter: EnergyMeter,
    progress: LiveProgress,
) -> None:
    def on_record(rec: Record) -> None:
        writer.append(rec)
        progress.update(rec)

    async with make_session(ccfg) as session:
        if warm:
            progress.phase("warm-up")
            await run_open_loop(session, warm, [0.0] * len(warm), ccfg, on_record, warmup=True)
        progress.phase("measured")
        meter.begin()
        try:
            if cfg.arrival.kind == "closed":
                await run_closed_loop(session, specs, cfg.arrival.concurrency or 1, ccfg, on_record)
            else:
                await run_open_loop(session, specs, [o or 0.0 for o in offsets], ccfg, on_record)
        finally:
            meter.end()


def run_event_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run the client on uvloop when installed, with the garbage collector paused.

    A full GC pass can stall the event loop for tens of ms, which shows up as send lateness and
    stretched chunk gaps; the client creates no reference cycles, so pausing it for a run is safe.
    """
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(main)
    finally:
        gc.enable()
        gc.set_threshold(*thresholds)
        gc.unfreeze()


PREFIX_CACHE_SHARE_MAX = 0.05  # share of prompt tokens a server may serve from cache beyond the workload's


def cache_warnings(
    workload: str, servers: dict[str, ServerMetrics], expected_reuse: float | None = None
) -> list[RunWarning]:
    """Warnings when a server answered measured prompts from its prefix cache beyond what the workload
    itself reuses.

    Random and trace workloads should compute every prompt, except the prefix reuse a trace holds
    (`expected_reuse`, Mooncake hash ids); more than that (e.g. the same --seed run twice against one
    server) makes prefill look free. In disaggregated mode the decode instance's external (transferred)
    KV is expected and not warned about.
    """
    if workload not in ("random", "trace"):
        return []
    allowed = (expected_reuse or 0.0) + PREFIX_CACHE_SHARE_MAX
    out = []
    for url, m in servers.items():
        rate = m.prefix_cache_hit_rate if m.error is None else None
        if rate is not None and rate > allowed:
            within = f" (the trace itself reuses {expected_reuse:.0%})" if expected_reuse else ""
            out.append(
                RunWarning(
                    code=PREFIX_CACHE,
                    observed=rate,
                    threshold=allowed,
                    message=f"{url} served {rate:.0%} of prompt tokens from its local prefix cache{within}: "
                    "the prompts were seen before on this server (same --seed as an earlier run?), so "
                    "latency and energy are not those of computing them; use a new --seed or restart the "
                    "server",
                )
            )
    return out


def _server_deltas(before: dict[str, Any], after: dict[str, Any]) -> ServerMetrics:
    if "error" in before or "error" in after:
        return ServerMetrics(error=str(after.get("error") or before.get("error")))
    return ServerMetrics(deltas=server_metrics.delta(before, after))


def run(cfg: RunConfig, argv: list[str]) -> Path:
    """Run one experiment; returns the path of result.json (also after an interruption)."""
    if cfg.mode not in MODES:
        raise ExperimentError(f"unknown mode {cfg.mode!r}; choose one of {', '.join(MODES)}")
    models = fetch_models(cfg.endpoint)
    model, tok_path = _resolve_tokenizer(cfg, models)
    setup = serving_setup.describe(cfg.endpoint, cfg.launch_plan)
    tokenizer, tok_source = open_tokenizer(cfg, tok_path, model, setup)
    n_warm = cfg.arrival.warmup
    try:
        specs, warm, trace = _workload(cfg.workload, tokenizer, n_warm, served_max_model_len(models, model))
    except TokenizerUnavailable as exc:
        raise ExperimentError(f"building the prompts failed: {exc}") from exc
    finally:
        if isinstance(tokenizer, ServerTokenizer):
            tokenizer.close()
    warm = [RequestSpec(-1 - i, s.prompt, s.input_tokens, s.output_tokens, None) for i, s in enumerate(warm)]
    offsets = schedule(specs, cfg.arrival)

    ccfg = ClientConfig(
        endpoint=cfg.endpoint,
        model=model,
        api=cfg.api,
        ignore_eos=cfg.ignore_eos,
        request_timeout_s=cfg.request_timeout_s,
        max_concurrency=cfg.arrival.max_concurrency,
    )
    run_dir = _run_dir(cfg)
    meta = RunMetadata.of(
        provenance.collect(argv),
        mode=cfg.mode,
        endpoint=cfg.endpoint,
        config=cfg,
        model=model,
        tokenizer=tok_path,
        tokenizer_source=tok_source,
        served_models=models,
        serving_setup=setup,
        run_dir=str(run_dir),
        trace=trace,
    )
    writer = ResultWriter(run_dir, meta)
    meter = _energy_meter(cfg, setup, run_dir / "power.csv")
    before = server_metrics.snapshot_all(cfg.server_metrics_urls)
    progress = LiveProgress(len(specs), n_warm)
    status: Status = "complete"
    error: str | None = None
    try:
        meter.start()
        if cfg.idle_seconds > 0:
            progress.phase(f"idle baseline {cfg.idle_seconds:g} s")
            meter.measure_idle(cfg.idle_seconds)
        with progress:
            run_event_loop(_drive(cfg, ccfg, warm, specs, offsets, writer, meter, progress))
    except KeyboardInterrupt:
        status, error = "interrupted", "interrupted by the user (Ctrl-C or SIGTERM)"
    except Exception as exc:  # keep what was measured, say what broke
        status, error = "failed", f"{type(exc).__name__}: {exc}"
    finally:
        meter.stop()
    after = server_metrics.snapshot_all(cfg.server_metrics_urls)
    result = writer.result
    result.summary = compute_summary(writer.records, cfg.slo)
    result.stages = stage_summary(writer.records)
    result.energy = meter.section()
    attribution_warning = attribute_run(result)  # per request and phase, from the power CSV
    result.server_metrics = {url: _server_deltas(before[url], after[url]) for url in cfg.server_metrics_urls}
    reuse = trace.prefix_reuse if trace is not None else None
    result.warnings = cache_warnings(
        cfg.workload.kind, result.server_metrics, reuse
    ) + client_timing_warnings(result.summary, capped=cfg.arrival.max_concurrency is not None)
    if cfg.arrival.kind != "closed" and (steady := steady_state_warning(result.measured())):
        result.warnings.append(steady)
    if attribution_warning:
        result.warnings.append(RunWarning(code=ATTRIBUTION, message=attribution_warning))
    for w in result.warnings:
        print(f"warning: {w}", file=sys.stderr)
    path = writer.finish(status, error)
    if status == "failed":
        raise ExperimentError(f"{error}; what was measured is in {path}")
    return path
