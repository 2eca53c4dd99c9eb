"""`python -m planner profile --endpoint URL`: measure ONE running vLLM instance into a profile file.

Steps, each printed as it runs:
1. server info (/v1/models, /version, /metrics: KV blocks from `vllm:cache_config_info`);
2. idle power over --idle-seconds (monitor window; the server loaded and idle);
3. prefill: each --prefill-sizes prompt alone (max_tokens=1), --prefill-repeats times, median latency,
   after --prefill-warmup unmeasured prompts of that size (a size's first use may compile kernels:
   vLLM's fused-MoE kernels took a 2048-token prefill from ~70 to 1109 ms on an H200);
   the server's own TTFT, queue and prefill histograms over each size give its API-server time
   (TTFT - queue - prefill), fitted as latency + per token and taken out of the prefill fit;
4. prefill power: back-to-back prompts of about one token budget from two clients, one window;
5. decode: for each batch B and context C, B streams at once with C-token prompts, the median gap
   between tokens once every stream decodes (one step at batch B); its power window over that span;
6. KV transfer: fitted from a P/D pair's stage timings (--pd-result, at light load), with the
   connector's time on the prefill GPU; else the stated default (planner/kv_transfer.py).
Then the models are fitted (planner/profile_model.py) and the file written with every raw point.
Every point is kept as it is measured in <output stem>.points.json (planner/profile_checkpoint.py): a run
that stops (a failed request, a timeout, too few points to fit) loses nothing, and the same command with
--resume measures only what is missing.

The server must be idle and alone on its GPU, started with the limits given here
(--max-num-batched-tokens / --max-num-seqs; the defaults are vLLM's for the device).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import socket
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from experiments import server_metrics
from experiments.client import ClientConfig, make_session
from experiments.model_dir import MoeRouting, moe_routing, read_config, shape_from_config
from planner.fits import FitError, fit_nonnegative
from planner.kv_refit import kv_model_from_pd
from planner.kv_transfer import (
    LLAMA_8B_KV_BYTES_PER_TOKEN,
    default_kv_transfer,
)
from planner.measured import OUTPUT_GROUP, output_group_cost_s
from planner.power_probe import PowerProbe
from planner.probe import (
    ProbeError,
    ServerInfo,
    Stream,
    decode_batch,
    prefill_once,
    server_info,
    steady_gaps,
    tokens_to_overlap,
)
from planner.profile_checkpoint import AskedDecode, AskedPrefill, Kept, open_checkpoint, points_path
from planner.profile_model import (
    DecodePoint,
    EngineLimits,
    FrontendModel,
    PowerPoint,
    PrefillPoint,
    Profile,
    Provenance,
    ServingLoopModel,
    build_profile,
    invoked_command,
)

GIB = 1 << 30
# Tries per decode point: each retry lengthens the streams (tokens_to_overlap) so that they outlast the
# batch's prefills, or, where a stream's whole answer came in one network read (a starved CPU host: the
# CI run of 2026-12-05 saw it for 16 and then 64 tokens), give the client reads to time; 16 -> 64 -> 256.
DECODE_ATTEMPTS = 3
_CACHE_INFO = re.compile(r"^vllm:cache_config_info\{(?P<labels>[^}]*)\}", re.MULTILINE)
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give integers >= 1")
    return values


def add_profile_parser(sub: Any) -> None:
    p = sub.add_parser(
        "profile",
        help="measure one running vLLM instance into a profile file",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--endpoint", required=True, help="base URL of ONE vLLM server, e.g. http://127.0.0.1:8000"
    )
    p.add_argument("--output", type=Path, default=Path("profile.json"), help="profile file to write")
    p.add_argument(
        "--prefill-sizes",
        type=_ints,
        default=[256, 512, 1024, 2048, 4096, 8192, 16384],
        help="prompt tokens (sizes beyond the server's max_model_len are skipped)",
    )
    p.add_argument("--prefill-repeats", type=int, default=3)
    p.add_argument(
        "--prefill-warmup", type=int, default=1, help="unmeasured prompts of each size before its repeats"
    )
    p.add_argument("--decode-batches", type=_ints, default=[1, 4, 16, 64, 256])
    p.add_argument("--decode-contexts", type=_ints, default=[512, 1024, 2048, 4096])
    p.add_argument(
        "--decode-tokens", type=int, default=256, help="tokens per decode stream (>= 1 s of decode)"
    )
    p.add_argument("--max-num-batched-tokens", type=int, default=None, help="the server's (default: vLLM's)")
    p.add_argument("--max-num-seqs", type=int, default=None, help="the server's (default: vLLM's)")
    p.add_argument("--kv-capacity", type=int, default=None, help="KV tokens (default: from /metrics)")
    p.add_argument(
        "--cudagraph-max-tokens",
        type=int,
        default=None,
        help="the server's largest CUDA-graph step (vLLM's max_cudagraph_capture_size; 0: none; default on "
        "a GPU: vLLM's min(2 x max_num_seqs, 512), on CPU none)",
    )
    p.add_argument("--gpu-id", type=int, default=0, help="NVML index of the server's GPU")
    p.add_argument("--monitor", choices=("auto", "nvml", "sim", "none"), default="auto")
    p.add_argument("--idle-seconds", type=float, default=5.0)
    p.add_argument("--prefill-power-seconds", type=float, default=5.0)
    p.add_argument("--pd-result", type=Path, default=None, help="a measured P/D run directory (KV transfer)")
    p.add_argument(
        "--kv-bytes-per-token",
        type=float,
        default=None,
        help="KV bytes per token (default: from the model's config.json, else Llama-3.1-8B bf16)",
    )
    p.add_argument(
        "--kv-cache-dtype",
        default=None,
        help="the server's vLLM --kv-cache-dtype, e.g. fp8 (default: auto, the model's dtype)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the unfinished run whose points are kept beside --output (<stem>.points.json): "
        "measure only the points still missing",
    )
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per request")


# ---------------------------------------------------------------------------------------------------------


def engine_limits(args: argparse.Namespace, info: ServerInfo, gpu_memory: int | None) -> EngineLimits:
    """The server's scheduler limits: flags, else vLLM's API-server defaults for the device."""
    if gpu_memory is None:
        tokens, seqs, why = 2048, 128, "vLLM CPU API-server defaults"
    elif gpu_memory >= 70 * GIB:
        tokens, seqs, why = 8192, 1024, "vLLM API-server defaults for >= 70 GiB GPUs"
    else:
        tokens, seqs, why = 2048, 256, "vLLM API-server defaults for < 70 GiB GPUs"
    if args.max_num_batched_tokens or args.max_num_seqs:
        why = "flags"
    labels = {}
    if m := _CACHE_INFO.search(info.metrics_text):
        labels = dict(_LABEL.findall(m.group("labels")))
    block = int(labels.get("block_size") or 16)
    kv = args.kv_capacity
    if kv is None:
        blocks = labels.get("num_gpu_blocks")
        if not blocks or blocks == "None":
            raise ValueError(
                "the server's /metrics has no vllm:cache_config_info num_gpu_blocks; pass --kv-capacity"
            )
        kv = int(blocks) * block
        why += f"; KV {blocks} blocks of {block} from /metrics"
    seqs = args.max_num_seqs or seqs
    graph, why_graph = cudagraph_bound(args.cudagraph_max_tokens, seqs, gpu_memory is not None)
    return EngineLimits(args.max_num_batched_tokens or tokens, seqs, kv, block, f"{why}; {why_graph}", graph)


def cudagraph_bound(flag: int | None, max_num_seqs: int, gpu: bool) -> tuple[int | None, str]:
    """The largest step the server replays as a CUDA graph, and why: the flag (0: none), else on a GPU
    vLLM's default max_cudagraph_capture_size min(2 x max_num_seqs, 512); on CPU none."""
    if flag is not None:
        if flag < 0:
            raise ValueError(f"--cudagraph-max-tokens {flag}: give the server's capture size, or 0 for none")
        return (flag or None), (
            f"CUDA graphs up to {flag} tokens (flag)" if flag else "no CUDA graphs (flag)"
        )
    if not gpu:
        return None, "no CUDA graphs (CPU)"
    bound = min(2 * max_num_seqs, 512)
    return bound, f"CUDA graphs up to {bound} tokens (vLLM's default min(2 x max_num_seqs, 512))"


def kv_bytes_per_token(args: argparse.Namespace, model: str) -> float:
    """--kv-bytes-per-token, else the model's config.json (a local directory: the testbed serves
    config-only models by path) at --kv-cache-dtype, else Llama-3.1-8B in bf16."""
    if args.kv_bytes_per_token:
        return float(args.kv_bytes_per_token)
    if (config := read_config(model)) is not None:
        return float(shape_from_config(config, model, args.kv_cache_dtype).bytes_per_token)
    return float(LLAMA_8B_KV_BYTES_PER_TOKEN)


def routing_of(model: str) -> MoeRouting | None:
    """An MoE model's expert routing from its config.json (None: dense, or no config here)."""
    config = read_config(model)
    return moe_routing(config) if config is not None else None


def log(message: str) -> None:
    print(message, flush=True)


_HISTOGRAMS = ("time_to_first_token", "request_queue_time", "request_prefill_time")


async def _server_times(base: str) -> dict[str, float] | None:
    """Sums and counts of the server's TTFT, queue and prefill histograms (None without them)."""
    try:
        raw = await asyncio.to_thread(server_metrics.scrape, base)
    except OSError:
        return None
    out: dict[str, float] = {}
    for name in _HISTOGRAMS:
        for part in ("sum", "count"):
            keys = [k for k in raw if k.startswith(f"vllm:{name}_seconds_{part}{{")]
            if not keys:
                return None
            out[f"{name}_{part}"] = sum(raw[k] for k in keys)
    return out


def _api_server_s(before: dict[str, float] | None, after: dict[str, float] | None) -> float | None:
    """Mean TTFT - queue - prefill over the requests between two scrapes (vLLM's own clocks)."""
    if before is None or after is None:
        return None
    d = {k: after[k] - before[k] for k in after}
    if any(d[f"{n}_count"] <= 0 for n in _HISTOGRAMS):
        return None
    mean = {n: d[f"{n}_sum"] / d[f"{n}_count"] for n in _HISTOGRAMS}
    return max(mean["time_to_first_token"] - mean["request_queue_time"] - mean["request_prefill_time"], 0.0)


def fit_frontend(points: list[tuple[int, float]]) -> FrontendModel:
    """API-server seconds per prompt length -> latency + per token (a median alone, for one length)."""
    if not points:
        return FrontendModel(source="the server's /metrics has no TTFT/queue/prefill histograms: "
                             "API-server time not separated (the prefill fit includes it)")  # fmt: skip
    source = f"vLLM's TTFT - queue - prefill time over {len(points)} prefill sizes"
    kept = tuple((int(n), float(t)) for n, t in points)
    try:
        fit = fit_nonnegative(
            ("latency_s", "per_token_s"), [(1.0, float(n)) for n, _ in points], [s for _, s in points]
        )
    except FitError:
        return FrontendModel(float(np.median([s for _, s in points])), 0.0, source + " (median)", None, kept)
    return FrontendModel(fit.coefficient("latency_s"), fit.coefficient("per_token_s"), source, fit, kept)


@dataclass(frozen=True)
class _Run:
    """What every step of one profile run measures with: the session and the server, its limits, the flags,
    the prompts' random stream, the power probe, and the points kept so far."""

    session: aiohttp.ClientSession
    cfg: ClientConfig
    info: ServerInfo
    limits: EngineLimits
    args: argparse.Namespace
    rng: np.random.Generator
    power: PowerProbe
    kept: Kept


async def _measure_prefill(run: _Run) -> None:
    session, cfg, info, args, rng, kept = run.session, run.cfg, run.info, run.args, run.rng, run.kept
    max_len = (info.max_model_len or 1 << 30) - 1  # one output token
    for size in args.prefill_sizes:
        if size > max_len:
            log(f"  prefill {size}: skipped (server max_model_len {info.max_model_len})")
            continue
        if done := kept.points.prefill_of(size):
            log(f"  prefill {size}: {1e3 * done.latency_s:.1f} ms, measured by an earlier run (resumed)")
            continue
        samples, tokens = [], size
        warm = [(await prefill_once(session, cfg, size, rng))[0] for _ in range(args.prefill_warmup)]
        before = await _server_times(cfg.endpoint)  # after the warm-up: its time stays out of the fit
        for _ in range(args.prefill_repeats):
            secs, tokens = await prefill_once(session, cfg, size, rng)
            samples.append(secs)
        point = PrefillPoint(tokens, statistics.median(samples), tuple(samples))
        kept.points.prefill.append(AskedPrefill(size, point))
        fe = _api_server_s(before, await _server_times(cfg.endpoint))
        if fe is not None:
            kept.points.api_server.append((tokens, fe))
        kept.save()
        extra = "" if fe is None else f", API server {1e3 * fe:.1f} ms"
        extra += f", warm-up {', '.join(f'{1e3 * w:.1f}' for w in warm)} ms" if warm else ""
        ms = 1e3 * point.latency_s
        log(f"  prefill {tokens:>6} tokens: {ms:8.1f} ms (median of {len(samples)}){extra}")


async def _prefill_power(run: _Run) -> None:
    args, power, kept = run.args, run.power, run.kept
    if not power.available or args.prefill_power_seconds <= 0:
        return
    if done := kept.points.power_of("prefill"):
        log(f"  prefill power: {done.watts:.0f} W, measured by an earlier run (resumed)")
        return
    size = min(run.limits.max_num_batched_tokens // 2, (run.info.max_model_len or 1 << 30) - 1)
    stop_at = time.perf_counter() + args.prefill_power_seconds

    async def worker() -> None:
        while time.perf_counter() < stop_at:
            await prefill_once(run.session, run.cfg, size, run.rng)

    await power.begin("prefill")
    await asyncio.gather(worker(), worker())
    if point := await power.end("prefill", "prefill"):
        kept.points.power.append(point)
        kept.save()
        log(f"  prefill power: {point.watts:.0f} W over {point.seconds:.1f} s")


def _power_window(
    power: PowerProbe, batch: int, sink: list[PowerPoint]
) -> Callable[[asyncio.Event, asyncio.Event], Awaitable[None]]:
    """A window from the moment every stream decodes until the first one ends."""

    async def window(all_started: asyncio.Event, first_ended: asyncio.Event) -> None:
        await all_started.wait()
        if first_ended.is_set() or not power.available:
            return
        await power.begin(f"decode-{batch}")
        await first_ended.wait()
        if point := await power.end(f"decode-{batch}", "decode", batch):
            sink.append(point)

    return window


async def _measure_decode(run: _Run) -> None:
    """Decode points, their power, and the API server's time per output of each batch over 128 streams."""
    args, limits, power, kept = run.args, run.limits, run.power, run.kept
    model_len = run.info.max_model_len or 1 << 30
    for batch in args.decode_batches:
        for ctx in args.decode_contexts:
            if done := kept.points.decode_of(batch, ctx):
                ms = 1e3 * done.step_s
                log(f"  decode B={batch} C={ctx}: step {ms:.2f} ms, measured by an earlier run (resumed)")
                continue
            tokens = args.decode_tokens
            # the most tokens per stream that the model length and the KV pool let the batch hold
            most = min(model_len - ctx, limits.kv_capacity_tokens // batch - ctx)
            for attempt in range(1, DECODE_ATTEMPTS + 1):
                if batch > limits.max_num_seqs or tokens > most:
                    log(f"  decode B={batch} C={ctx}: skipped (max_num_seqs, max_model_len or KV capacity)")
                    break
                got: list[PowerPoint] = []
                window = _power_window(power, batch, got)
                try:
                    streams = await decode_batch(run.session, run.cfg, batch, ctx, tokens, run.rng, window)
                except ProbeError as exc:
                    if attempt == 1:  # the streams asked for failed: the server's fault, said as it is
                        raise
                    # the lengthened streams are the profiler's choice (a starved CPU server dropped 120
                    # streams of 1024 tokens in the test suite of 2026-12-05): the point is skipped
                    log(f"  decode B={batch} C={ctx}: skipped (the streams of {tokens} tokens failed: {exc})")
                    break
                prompt = streams[0].prompt_tokens or ctx
                try:
                    step, mean_ctx, n_gaps = steady_gaps(streams, prompt)
                except ProbeError as exc:
                    longer = tokens_to_overlap(streams, tokens)
                    if longer is not None:  # as long as the model length and the KV pool allow
                        longer = min(longer, most)
                    if attempt < DECODE_ATTEMPTS and longer is not None and longer > tokens:
                        log(f"  decode B={batch} C={ctx}: {exc}; again with {longer} tokens per stream")
                        tokens = longer
                        continue
                    log(f"  decode B={batch} C={ctx}: skipped ({exc})")
                    break
                kept.points.decode.append(AskedDecode(batch, ctx, DecodePoint(batch, mean_ctx, step, n_gaps)))
                kept.points.power += got
                if batch > OUTPUT_GROUP and (cost := probe_output_cost_s(streams)) is not None:
                    kept.points.output_costs.append(cost)
                    log(f"  decode B={batch:>4}: API server {1e6 * cost:.1f} us per output (output groups)")
                kept.save()
                extra = f", {got[0].watts:.0f} W" if got else ""
                log(f"  decode B={batch:>4} C={prompt:>6}: step {1e3 * step:7.2f} ms ({n_gaps} gaps){extra}")
                break


def probe_output_cost_s(streams: list[Stream]) -> float | None:
    """The API server's time per output from a decode batch's chunk times (monotonic s)."""
    return output_group_cost_s([(np.asarray(s.chunks) * 1e9).astype(np.int64) for s in streams if s.chunks])


def probe_serving_loop(costs: list[float]) -> ServingLoopModel:
    """Async scheduling (vLLM's default) with the probe's median time per output; none measured (no batch
    over 128 streams): the synchronous default, to be set with `python -m planner loop`."""
    if not costs:
        return ServingLoopModel(
            source="not measured: no decode batch over 128 streams; `python -m planner loop`"
        )
    cost = float(np.median(costs))
    return ServingLoopModel(
        True,
        cost,
        f"async scheduling (vLLM's default since vllm-project/vllm#27614); {1e6 * cost:.1f} us per output: "
        f"median of the decode probe's {len(costs)} batches over 128 streams (output groups' period / 128)",
    )


async def _measure_points(
    args: argparse.Namespace, power: PowerProbe
) -> tuple[ServerInfo, EngineLimits, Kept]:
    base = args.endpoint.rstrip("/")
    # The runner's session: no connection cap (aiohttp's default of 100 kept a 256-stream decode batch
    # from ever running at once); idle pooled connections dropped before vLLM's keep-alive drops them
    # (the idle-power window outlasts it).
    async with make_session(ClientConfig(base, "", request_timeout_s=args.timeout)) as session:
        info = await server_info(session, base)
        cfg = ClientConfig(base, info.model, request_timeout_s=args.timeout)
        real_gpu = power.available and not power.simulated
        limits = engine_limits(args, info, power.device.get("memory_total_bytes") if real_gpu else None)
        log(f"server: {info.model} (vLLM {info.vllm_version or '?'}), max_model_len {info.max_model_len}")
        log(
            f"engine: {limits.max_num_batched_tokens} batched tokens, {limits.max_num_seqs} seqs, "
            f"KV {limits.kv_capacity_tokens} tokens ({limits.source})"
        )
        log(f"power: {'GPU ' + str(args.gpu_id) if power.available else power.reason}")
        gpu = power.device.get("name") or ("cpu" if not power.available else None)
        kept = open_checkpoint(
            points_path(args.output), args.resume, info.model, info.vllm_version, gpu, limits
        )
        runs = kept.points.runs
        if runs > 1:
            log(f"resumed: {kept.points.describe()} kept in {kept.path} since {kept.points.started_iso}")
        # a resumed run draws other prompts than the earlier ones: the same words again would be served
        # from the prefix cache of a server still up (probe.py: the cache must never serve a probe)
        rng = np.random.default_rng(args.seed if runs == 1 else [args.seed, runs])
        try:
            if done := kept.points.power_of("idle"):
                log(f"  idle power: {done.watts:.0f} W, measured by an earlier run (resumed)")
            elif idle := power.idle(args.idle_seconds):
                kept.points.power.append(idle)
                kept.save()
                log(f"  idle power: {idle.watts:.0f} W")
            await prefill_once(session, cfg, 16, rng)  # warm-up
            run = _Run(session, cfg, info, limits, args, rng, power, kept)
            await _measure_prefill(run)
            await _prefill_power(run)
            await _measure_decode(run)
        except BaseException:
            log(kept.note())
            raise
    return info, limits, kept


async def measure(args: argparse.Namespace) -> Profile:
    power = PowerProbe(args.monitor, args.gpu_id)
    try:
        info, limits, kept = await _measure_points(args, power)
    finally:
        power.close()
    try:
        return _fitted(args, info, limits, kept, power)
    except BaseException:
        log(kept.note())
        raise


def _fitted(
    args: argparse.Namespace, info: ServerInfo, limits: EngineLimits, kept: Kept, power: PowerProbe
) -> Profile:
    got = kept.points
    prefill = sorted((a.point for a in got.prefill), key=lambda p: p.prompt_tokens)
    decode = [a.point for a in sorted(got.decode, key=lambda a: (a.batch, a.context))]
    frontend = fit_frontend(sorted(got.api_server))
    routing = routing_of(info.model)
    if routing:
        log(f"MoE: {routing.experts} experts, {routing.per_token} per token: decode fit adds experts_touched")
    notes = ["power from the simulated NVML backend: NOT real watts" if power.simulated else ""]
    if got.runs > 1:
        notes.append(f"measured by {got.runs} runs from {got.started_iso} (--resume over {kept.path.name})")
    if (first := got.engine.kv_capacity_tokens) != limits.kv_capacity_tokens:
        notes.append(f"KV pool {first} tokens in the first run, {limits.kv_capacity_tokens} now")
    provenance = Provenance(
        source="measured",
        model=info.model,
        gpu=got.gpu,
        vllm_version=info.vllm_version,
        clocks={k: power.device.get(k) for k in ("sm_clock_mhz", "mem_clock_mhz", "power_limit_w", "driver")}
        if power.device
        else None,
        host=socket.gethostname(),
        created_iso=datetime.now(UTC).isoformat(timespec="seconds"),
        command=invoked_command(),
        notes="; ".join(n for n in notes if n),
    )
    bytes_per_token = kv_bytes_per_token(args, info.model)
    loop = probe_serving_loop(got.output_costs)
    prof = build_profile(
        provenance, limits, prefill, decode, default_kv_transfer(bytes_per_token), got.power, power.reason,
        (), frontend, routing, loop,
    )  # fmt: skip
    if args.pd_result is None:
        return prof
    # a prompt alone on this instance (API server + prefill steps) from the models just fitted
    kv, kv_points = kv_model_from_pd(
        args.pd_result, decode, bytes_per_token, frontend, prof.client_prefill_s, routing
    )
    return replace(prof, kv_transfer=kv, kv_points=tuple(kv_points))


def cmd_profile(args: argparse.Namespace) -> int:
    try:
        profile = asyncio.run(measure(args))
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise RuntimeError(f"{args.endpoint}: {exc!r} while profiling; is the server still up?") from None
    path = profile.save(args.output)
    points_path(args.output).unlink(missing_ok=True)  # every point is in the profile now
    log(profile.describe())
    log(f"profile: {path}")
    return 0
