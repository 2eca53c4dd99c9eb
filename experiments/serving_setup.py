"""What serves the endpoint: the serving setup every result records (read, never typed by hand).

Sources, best first:
1. the launcher's plan (``launch.json`` in its run directory): given with ``--launch-plan``, or found
   through the launchers' current-run pointers (``results/runs/.current-*``) when its endpoint, or one
   of its instances, is the endpoint driven;
2. the proxy's ``GET /setup``;
3. the server itself: ``/version`` and ``/v1/models`` (a plain vLLM server we did not launch).

Each instance's effective engine settings (prefix caching, chunked prefill, token budget, KV cache
capacity, block size) are read from its own start-up log and ``/metrics`` when they are at hand.
The result is an `experiments.schema.ServingSetup`.
"""

from __future__ import annotations

import ast
import json
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from experiments.schema import (
    Instance,
    InstanceSettings,
    SchemaError,
    ServingSetup,
    SetupKind,
    convert,
    parse_kind,
    setup_label,
)

POINTERS = (Path("results/runs/.current-disagg"), Path("results/runs/.current-traditional"))
PLAN_FILE = "launch.json"

# vLLM start-up log lines (0.23 to 0.32) -> effective engine settings.
_LOG_PATTERNS: dict[str, tuple[str, type]] = {
    "vllm_version": (r"Initializing a V1 LLM engine \(v([^)]+)\)", str),
    "max_model_len": (r"max_seq_len=(\d+)", int),
    "enable_prefix_caching": (r"enable_prefix_caching=(True|False)", bool),
    "enable_chunked_prefill": (r"enable_chunked_prefill=(True|False)", bool),
    "enforce_eager": (r"enforce_eager=(True|False)", bool),
    "dtype": (r"\bdtype=([\w.]+)", str),
    "kv_cache_dtype": (r"kv_cache_dtype=(\w+)", str),
    "max_num_batched_tokens": (r"max_num_batched_tokens=(\d+)", int),
    "kv_cache_tokens": (r"KV cache size: ([\d,]+) tokens", int),
}
# Serve flags worth a column of their own; every flag is kept in `serve_args` anyway.
KEY_FLAGS = (
    "gpu_memory_utilization",
    "max_num_batched_tokens",
    "max_num_seqs",
    "block_size",
    "enable_prefix_caching",
    "max_model_len",
)


def _get_json(url: str, timeout: float = 5.0) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _get_text(url: str, timeout: float = 5.0) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.read().decode(errors="replace")
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _norm(url: str) -> str:
    return url.rstrip("/").replace("localhost", "127.0.0.1")


def parse_serve_args(command: list[str]) -> dict[str, Any]:
    """`--flag value` / `--flag` pairs of a vLLM command line, as {flag_with_underscores: value}."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(command):
        tok = command[i]
        if tok.startswith("--"):
            key = tok[2:].replace("-", "_")
            if "=" in key:
                key, val = key.split("=", 1)
                out[key] = val
            elif i + 1 < len(command) and not command[i + 1].startswith("--"):
                out[key] = command[i + 1]
                i += 1
            else:
                out[key] = True
        i += 1
    return out


def parse_engine_log(text: str) -> dict[str, Any]:
    """Effective settings a vLLM instance logged at start-up (absent keys: not logged)."""
    out: dict[str, Any] = {}
    for key, (pattern, kind) in _LOG_PATTERNS.items():
        m = re.search(pattern, text)
        if not m:
            continue
        raw = m.group(1)
        out[key] = raw == "True" if kind is bool else kind(raw.replace(",", "")) if kind is int else raw
    m = re.search(r"non-default args: (\{.*\})", text)
    if m:
        try:
            out["non_default_args"] = ast.literal_eval(m.group(1))
        except (ValueError, SyntaxError):
            out["non_default_args"] = m.group(1)
    return out


def cache_config_from_metrics(text: str | None) -> dict[str, str]:
    """Labels of vLLM's `vllm:cache_config_info` gauge (block size, GPU memory share, blocks...)."""
    if not text:
        return {}
    for line in text.splitlines():
        if line.startswith("vllm:cache_config_info{"):
            body = line[line.index("{") + 1 : line.rindex("}")]
            return dict(re.findall(r'(\w+)="([^"]*)"', body))
    return {}


def _settings(values: dict[str, Any]) -> InstanceSettings:
    """The key settings; a value that does not parse (an odd flag) is left out, not fatal."""
    kept = {}
    for key, value in values.items():
        try:
            convert({key: value}, InstanceSettings, "serve settings")
        except SchemaError:
            continue
        kept[key] = value
    return convert(kept, InstanceSettings, "serve settings")


def _instance(entry: dict[str, Any], role: str, plan_dir: Path | None, version: str | None) -> Instance:
    command = list(entry.get("command") or [])
    args = parse_serve_args(command)
    log_path = plan_dir / f"{entry.get('name')}.log" if plan_dir else None
    engine: dict[str, Any] = {}
    if log_path and log_path.exists():
        engine = parse_engine_log(log_path.read_text(errors="replace")[:2_000_000])
    url = entry.get("url")
    cache = cache_config_from_metrics(_get_text(f"{url}/metrics")) if url else {}
    key = {k: args.get(k) for k in KEY_FLAGS}
    key["block_size"] = key["block_size"] or cache.get("block_size")
    key["max_num_batched_tokens"] = key["max_num_batched_tokens"] or engine.get("max_num_batched_tokens")
    key["enable_prefix_caching"] = (
        key["enable_prefix_caching"]
        if key["enable_prefix_caching"] is not None
        else engine.get("enable_prefix_caching")
    )
    gpu = entry.get("gpu")
    return Instance(
        name=entry.get("name"),
        role=role,
        url=url,
        gpu=None if gpu is None else str(gpu),
        node=entry.get("node"),
        node_address=entry.get("node_address"),
        vllm_version=engine.get("vllm_version") or version,
        kv_transfer_config=json.loads(args["kv_transfer_config"]) if "kv_transfer_config" in args else None,
        settings=_settings(key),
        engine_log=engine,
        cache_config=cache,
        serve_args=args,
    )


def from_plan(plan: dict[str, Any], plan_path: Path, endpoint: str) -> ServingSetup | None:
    """The setup a launch plan describes, as seen from `endpoint` (None if the plan does not serve it)."""
    plan_dir = plan_path.parent
    version = plan.get("vllm_version")
    if "instances" in plan:  # single-instance launcher
        entries = [(e.get("role", "serving"), e) for e in plan["instances"]]
    else:
        entries = [("prefill", e) for e in plan.get("prefill", [])]
        entries += [("decode", e) for e in plan.get("decode", [])]
    connector = plan.get("connector")
    if connector is None and plan.get("proxy"):
        cmd = list(plan["proxy"])
        connector = cmd[cmd.index("--connector") + 1] if "--connector" in cmd else None
    if connector == "passthrough":
        entries = [("serving", e) for _, e in entries]
    ep = _norm(endpoint)
    plan_ep = _norm(plan.get("endpoint") or "")
    instances = [_instance(e, role, plan_dir, version) for role, e in entries]
    cluster = (plan.get("cluster") or {}).get("address")
    if ep != plan_ep:
        hit = [i for i in instances if _norm(i.url or "") == ep]
        if not hit:
            return None
        # One instance of a launched group driven directly: the others stay idle (and are listed).
        hit[0].role = "serving"
        idle = [str(i.name) for i in instances if i is not hit[0]]
        setup = _describe("single", None, [hit[0]], plan_path, version, idle=idle)
    elif connector in (None, "single"):
        kind = "single" if len(instances) == 1 else "replicas"
        setup = _describe(kind, None, instances, plan_path, version)
    elif connector == "passthrough":
        setup = _describe("replicas", None, instances, plan_path, version, select=_select(plan))
    else:
        setup = _describe(
            "xpyd",
            connector,
            instances,
            plan_path,
            version,
            select=_select(plan),
            options=plan.get("connector_options"),
            policy=_proxy_flag(plan, "--policy") or "split",
        )
    setup.cluster = cluster
    return setup


def _proxy_flag(plan: dict[str, Any], flag: str) -> str | None:
    cmd = list(plan.get("proxy") or [])
    return cmd[cmd.index(flag) + 1] if flag in cmd else None


def _select(plan: dict[str, Any]) -> str | None:
    return _proxy_flag(plan, "--select")


def _describe(
    kind: SetupKind,
    connector: str | None,
    instances: list[Instance],
    plan_path: Path | None,
    version: str | None,
    *,
    idle: list[str] | None = None,
    select: str | None = None,
    options: dict[str, Any] | None = None,
    policy: str | None = None,
) -> ServingSetup:
    n_p = sum(1 for i in instances if i.role == "prefill")
    n_d = sum(1 for i in instances if i.role == "decode")
    # Across nodes (--cluster) GPU 0 of one node is not GPU 0 of another: name the node too.
    gpus = sorted({f"{i.node[:8]}/{i.gpu}" if i.node else i.gpu for i in instances if i.gpu is not None})
    versions = sorted({i.vllm_version for i in instances if i.vllm_version}) or ([version] if version else [])
    if kind == "xpyd" and options is None and instances:
        kv = next((i.kv_transfer_config for i in instances if i.kv_transfer_config), None) or {}
        options = kv.get("kv_connector_extra_config")
    opts = (options or {}) if kind == "xpyd" else {}
    label = setup_label(
        kind,
        len(instances),
        n_prefill=n_p,
        n_decode=n_d,
        connector=connector,
        send_type=opts.get("send_type"),
        push=opts.get("mode") == "push",  # NIXL push (WRITE); pull is the default
        policy=policy,
    )
    return ServingSetup(
        kind=kind,
        label=label,
        connector=connector,
        connector_options=options if kind == "xpyd" else None,
        select=select,
        policy=policy if kind == "xpyd" else None,
        num_instances=len(instances),
        num_prefill=n_p if kind == "xpyd" else None,
        num_decode=n_d if kind == "xpyd" else None,
        gpus=gpus,
        num_gpus=len(gpus) or None,
        vllm_versions=versions,
        instances=instances,
        idle_instances=idle or [],
        source=f"launch plan {plan_path}" if plan_path else None,
    )


def find_plan(endpoint: str, explicit: Path | None) -> tuple[dict[str, Any], Path] | None:
    candidates: list[Path] = []
    if explicit is not None:
        candidates.append(explicit / PLAN_FILE if explicit.is_dir() else explicit)
    for ptr in POINTERS:
        if ptr.exists():
            candidates.append(Path(ptr.read_text().strip()) / PLAN_FILE)
    for path in candidates:
        try:
            plan = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if explicit is not None and path == candidates[0]:
            return plan, path
        urls = {_norm(plan.get("endpoint") or "")}
        for role in ("prefill", "decode", "instances"):
            urls |= {_norm(e.get("url") or "") for e in plan.get(role, [])}
        if _norm(endpoint) in urls:
            return plan, path
    return None


def describe(endpoint: str, launch_plan: Path | None = None) -> ServingSetup:
    """The serving setup behind `endpoint`, from the best source at hand (see the module docstring)."""
    reported = {
        "version": _get_json(f"{endpoint.rstrip('/')}/version"),
        "models": _get_json(f"{endpoint.rstrip('/')}/v1/models"),
    }
    found = find_plan(endpoint, launch_plan)
    if found is not None:
        setup = from_plan(found[0], found[1], endpoint)
        if setup is not None:
            setup.server_reported = reported
            return setup
    proxy = _get_json(f"{endpoint.rstrip('/')}/setup")
    if isinstance(proxy, dict) and proxy:
        kind = proxy.get("kind")
        live = proxy.get("proxy")
        policy = live.get("policy") if isinstance(live, dict) else None
        return ServingSetup(
            kind=parse_kind(kind),
            label=proxy.get("label"),
            policy=policy if isinstance(policy, str) else None,
            source="proxy /setup",
            proxy_setup=proxy,
            server_reported=reported,
        )
    version = (reported["version"] or {}).get("version") if isinstance(reported["version"], dict) else None
    inst = Instance(
        name="server",
        url=endpoint,
        vllm_version=version,
        cache_config=cache_config_from_metrics(_get_text(f"{endpoint.rstrip('/')}/metrics")),
    )
    setup = _describe("single", None, [inst], None, version)
    setup.source = "server /version and /v1/models (no launch plan found)"
    setup.server_reported = reported
    return setup


def instance_urls(setup: ServingSetup) -> list[str]:
    """URLs of the vLLM instances behind a setup: from its instances, else the proxy's live view."""
    urls = [i.url for i in setup.instances if i.url]
    live = ((setup.proxy_setup or {}).get("proxy") or {}).get("instances") or {}
    if isinstance(live, dict):
        for entries in live.values():
            urls += [e["url"] for e in entries or [] if isinstance(e, dict) and isinstance(e.get("url"), str)]
    return list(dict.fromkeys(urls))
