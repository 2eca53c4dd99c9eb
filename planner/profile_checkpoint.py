"""What a `python -m planner profile` run has measured so far, kept beside its --output as it measures.

The file (`<output stem>.points.json`) is rewritten whole, atomically, after every point: a run stopped by
a failed request, a fit short of points, or a kill (`timeout PROFILE_S`, a device call's limit) loses at
most the point it was measuring. `--resume` continues it against the same instance (same model, vLLM
version, GPU and scheduler limits: a server launched again the same way counts, its KV pool may differ),
measuring only the points still missing; the file goes once the profile is written. A run without
`--resume` refuses to start over points it would overwrite.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from experiments.schema import SchemaError, convert, to_builtins
from planner.profile_model import DecodePoint, EngineLimits, PowerPoint, PrefillPoint, ProfileError
from testbed.files import atomic_write

POINTS_KIND = "planner-profile-points"


@dataclass(frozen=True)
class AskedPrefill:
    """The prefill point measured for the prompt size asked for (`size`; usage may count a few more)."""

    size: int
    point: PrefillPoint


@dataclass(frozen=True)
class AskedDecode:
    """The decode point measured for the batch and prompt context asked for."""

    batch: int
    context: int
    point: DecodePoint


@dataclass
class ProfileCheckpoint:
    model: str
    vllm_version: str | None
    gpu: str | None
    engine: EngineLimits
    started_iso: str  # when the first run began
    runs: int = 1  # profile runs that wrote this file (the first: 1)
    prefill: list[AskedPrefill] = field(default_factory=list)
    api_server: list[tuple[int, float]] = field(default_factory=list)  # (prompt tokens, API-server s)
    power: list[PowerPoint] = field(default_factory=list)
    decode: list[AskedDecode] = field(default_factory=list)
    output_costs: list[float] = field(default_factory=list)  # API-server s per output, batches > 128
    kind: str = POINTS_KIND

    @property
    def count(self) -> int:
        """Points kept: prefill, decode and power."""
        return len(self.prefill) + len(self.decode) + len(self.power)

    def describe(self) -> str:
        return f"{len(self.prefill)} prefill, {len(self.decode)} decode and {len(self.power)} power points"

    def prefill_of(self, size: int) -> PrefillPoint | None:
        return next((a.point for a in self.prefill if a.size == size), None)

    def decode_of(self, batch: int, context: int) -> DecodePoint | None:
        return next((a.point for a in self.decode if (a.batch, a.context) == (batch, context)), None)

    def power_of(self, state: str) -> PowerPoint | None:
        return next((p for p in self.power if p.state == state), None)


@dataclass
class Kept:
    """A run's points and the file that keeps them."""

    points: ProfileCheckpoint
    path: Path

    def note(self) -> str:
        """What a stopped run leaves, and how to go on."""
        if not self.points.count:
            return "no point measured: nothing kept"
        return (
            f"kept {self.points.describe()} in {self.path}: the same command with --resume measures only "
            "what is missing"
        )

    def save(self) -> None:
        atomic_write(self.path, (json.dumps(to_builtins(self.points), indent=1) + "\n").encode())


def points_path(output: Path) -> Path:
    """Where a profile run writing `output` keeps its points until the profile is written."""
    return output.with_name(f"{output.stem}.points.json")


def load_checkpoint(path: Path) -> ProfileCheckpoint:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ProfileError(
            f"--resume: no points at {path} (a profile run keeps them there until its profile is written)"
        ) from None
    except json.JSONDecodeError as exc:
        raise ProfileError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("kind") != POINTS_KIND:
        raise ProfileError(f'{path} is not a profile run\'s points (no "kind": "{POINTS_KIND}")')
    try:
        return convert(data, ProfileCheckpoint, f"points file {path}")
    except SchemaError as exc:
        raise ProfileError(str(exc)) from exc


def open_checkpoint(
    path: Path, resume: bool, model: str, vllm_version: str | None, gpu: str | None, engine: EngineLimits
) -> Kept:
    """A new checkpoint, or (`resume`) the one at `path` if it measured this instance; raises ProfileError
    where `path` holds points that this run would overwrite or cannot continue."""
    if not resume:
        if path.exists():
            kept = load_checkpoint(path)
            raise ProfileError(
                f"{path} holds {kept.describe()} of an unfinished profile run (from {kept.started_iso}): "
                "add --resume to continue it, or remove it to start afresh"
            )
        started = datetime.now(UTC).isoformat(timespec="seconds")
        return Kept(ProfileCheckpoint(model, vllm_version, gpu, engine, started), path)
    kept = load_checkpoint(path)
    here = _instance(model, vllm_version, gpu, engine)
    there = _instance(kept.model, kept.vllm_version, kept.gpu, kept.engine)
    for what, value in here.items():
        if value != there[what]:
            raise ProfileError(
                f"--resume: {path} measured another instance ({what} {there[what]} vs {value} here); "
                "serve the same one, or remove the file to start afresh"
            )
    return Kept(replace(kept, runs=kept.runs + 1), path)


def _instance(
    model: str, vllm_version: str | None, gpu: str | None, engine: EngineLimits
) -> dict[str, object]:
    """What must match for points to be one instance's: the scheduler's limits, not the KV pool (a server
    launched again sizes it anew, a few blocks apart, and no point measured depends on it)."""
    limits = replace(engine, source="", kv_capacity_tokens=1)
    return {"model": model, "vLLM version": vllm_version, "GPU": gpu, "scheduler limits": limits}
