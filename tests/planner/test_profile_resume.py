"""A `planner profile` run that stops keeps every point it measured; `--resume` measures only the rest."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from planner.profile_checkpoint import load_checkpoint, points_path
from planner.profile_model import ProfileError, load_profile
from tests.planner.fake_vllm import fake_vllm
from tests.planner.test_profile_run import ROOT, profile_args, profile_cmd

SLOW_DECODE = ("--decode-tokens", "200")  # 200 steps of >= 2.5 ms: >= 0.5 s a point, 6 points


def _stop_at_first_decode_point(url: str, out: Path) -> str:
    """The profile as `timeout` stops it: SIGTERM once its first decode point is logged; its log."""
    args = profile_args(url, out, "--monitor", "sim", "--idle-seconds", "0.3", *SLOW_DECODE)
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("  decode B=   1 C=    "):  # a measured point (skips and retries read otherwise)
            proc.send_signal(signal.SIGTERM)
            break
    lines += proc.stdout.readlines()
    assert proc.wait(30) == -signal.SIGTERM, "".join(lines)
    return "".join(lines)


def test_a_killed_run_keeps_its_points_and_resume_measures_only_the_rest(tmp_path: Path) -> None:
    out = tmp_path / "p.json"
    first_prompts: list[str] = []
    with fake_vllm(prompts=first_prompts) as url:
        log = _stop_at_first_decode_point(url, out)
    kept_path = points_path(out)
    assert not out.exists() and kept_path == tmp_path / "p.points.json", log
    kept = load_checkpoint(kept_path)
    # what the log said it measured, point by point: 3 prefill sizes (4096 > max_model_len), idle power,
    # and the first decode point (B=1 C=32) with its power window
    assert [a.size for a in kept.prefill] == [64, 256, 1024]
    assert [(a.batch, a.context) for a in kept.decode] == [(1, 32)]
    assert sorted(p.state for p in kept.power) == ["decode", "idle"] and kept.runs == 1
    for a in kept.prefill:
        assert f"prefill {a.point.prompt_tokens:>6} tokens: {1e3 * a.point.latency_s:8.1f} ms" in log
    before = kept_path.read_bytes()

    # without --resume the run would start over those points: refused, one line, the file untouched
    with fake_vllm() as url:
        refused = profile_cmd(url, out, "--monitor", "sim", "--idle-seconds", "0.3", *SLOW_DECODE)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert "add --resume" in refused.stderr and "3 prefill, 1 decode and 2 power points" in refused.stderr
    assert kept_path.read_bytes() == before

    # the same server still up: --resume measures the 5 decode points left and nothing else
    resumed_prompts: list[str] = []
    with fake_vllm(prompts=resumed_prompts) as url:
        proc = profile_cmd(url, out, "--monitor", "sim", "--idle-seconds", "0.3", *SLOW_DECODE, "--resume")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not kept_path.exists()
    assert proc.stdout.count("measured by an earlier run (resumed)") == 3 + 1 + 1  # prefill, idle, B=1 C=32
    prof = load_profile(out)
    assert [p for p in prof.prefill_points] == [a.point for a in kept.prefill]  # samples and all
    assert [(p.batch, p.context_tokens) for p in prof.decode_points][:1] == [
        (a.point.batch, a.point.context_tokens) for a in kept.decode
    ]
    assert len(prof.decode_points) == 6 and prof.decode_points[0] == kept.decode[0].point
    assert "measured by 2 runs from " + kept.started_iso in prof.provenance.notes
    # the resumed run sent its 16-token warm-up and decode streams (32 and 128 tokens), no prefill probe;
    # no prompt of it starts as one of the first run's did (the prefix cache would serve it on a server
    # still up)
    assert {len(p.split()) for p in resumed_prompts} == {16, 32, 128}
    assert len(resumed_prompts) >= 1 + (1 + 1 + 2 + 2 + 4 + 4) - 1  # B=1 C=32 not again
    starts = {" ".join(p.split()[:8]) for p in first_prompts}
    assert not starts & {" ".join(p.split()[:8]) for p in resumed_prompts}


def test_a_fit_short_of_points_keeps_them_and_resume_adds_the_sizes_missing(tmp_path: Path) -> None:
    """One prefill size cannot be fitted: the run stops (exit 2) after measuring; --resume with the other
    sizes measures only those (on a server whose KV pool came out smaller: 4000 blocks of 16 before)."""
    out = tmp_path / "p.json"
    with fake_vllm() as url:
        short = profile_cmd(url, out, "--monitor", "none", "--prefill-sizes", "64")
        more = profile_cmd(url, out, "--monitor", "none", "--prefill-sizes", "64,256,1024", "--resume",
                           "--kv-capacity", "50000")  # fmt: skip
    assert short.returncode == 2 and "need at least" in short.stderr, short.stdout + short.stderr
    assert f"kept 1 prefill, 6 decode and 0 power points in {points_path(out)}" in short.stdout
    assert more.returncode == 0, more.stdout + more.stderr
    assert more.stdout.count("(resumed)") == 1 + 6 and "prefill    256 tokens" in more.stdout
    prof = load_profile(out)
    assert [p.prompt_tokens for p in prof.prefill_points] == [64, 256, 1024]
    # launched again, its KV pool may differ (no point depends on it): the profile takes the last run's
    assert prof.engine.kv_capacity_tokens == 50000
    assert "KV pool 64000 tokens in the first run, 50000 now" in prof.provenance.notes


def test_resume_refuses_another_instance_and_a_file_that_is_not_points(tmp_path: Path) -> None:
    out = tmp_path / "p.json"
    with fake_vllm() as url:
        short = profile_cmd(url, out, "--monitor", "none", "--prefill-sizes", "64")
        other = profile_cmd(url, out, "--monitor", "none", "--resume", "--max-num-batched-tokens", "1024")
        missing = profile_cmd(url, tmp_path / "q.json", "--monitor", "none", "--resume")
    assert short.returncode == 2
    assert other.returncode == 2 and other.stderr.count("\n") == 1, other.stderr
    assert "measured another instance (scheduler limits" in other.stderr and "1024" in other.stderr
    assert load_checkpoint(points_path(out)).runs == 1  # untouched
    assert missing.returncode == 2 and "--resume: no points at" in missing.stderr
    bad = tmp_path / "r.points.json"
    bad.write_text(json.dumps({"kind": "planner-profile"}))
    with pytest.raises(ProfileError, match="is not a profile run's points"):
        load_checkpoint(bad)
