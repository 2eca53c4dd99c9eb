"""disagg/campaigns/profile_instance.sh cut short by PROFILE_S, as a device call's limit cuts it: the next
call goes on from the points kept, until the profile is whole (a fake vLLM server; nvidia-smi stood in)."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

from planner.profile_checkpoint import load_checkpoint
from planner.profile_model import load_profile
from tests.planner.fake_vllm import fake_vllm

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "disagg" / "campaigns" / "profile_instance.sh"
# later flags win over the script's H200 sizes: 3 prefill sizes, 4 decode points of 2-2.4 s each
SMALL = ["--prefill-sizes", "64,256,1024", "--decode-batches", "1,2", "--decode-contexts", "32,128",
         "--decode-tokens", "800", "--idle-seconds", "0", "--prefill-power-seconds", "0",
         "--monitor", "none"]  # fmt: skip


def test_a_profile_cut_short_goes_on_from_its_points_in_the_next_call(tmp_path: Path) -> None:
    bin_dir, dest = tmp_path / "bin", tmp_path / "profile"
    bin_dir.mkdir()
    for name, body in (("python3", f'exec {sys.executable} "$@"'), ("nvidia-smi", "echo index,name")):
        (bin_dir / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PROFILE_S": "7"}
    codes, kept_decode, kept_counts = [], [], [0]
    with fake_vllm() as url:
        # each call gets 7 s; the 4 decode points alone take >= 8 s, so the first call is always cut. On busy
        # cores a call may be cut before it measures anything (its start alone can take seconds): it keeps
        # nothing and is no run of the profile's, so the calls that kept points are counted from the file
        for _ in range(20):
            proc = subprocess.run(["bash", str(SCRIPT), "m", url, str(dest), *SMALL], cwd=ROOT, env=env,
                                  capture_output=True, text=True, timeout=120)  # fmt: skip
            codes.append(proc.returncode)
            if proc.returncode != 124:
                break
            if (dest / "h200-m.points.json").exists():
                kept = load_checkpoint(dest / "h200-m.points.json")
                kept_decode.append(len(kept.decode))
                kept_counts.append(kept.count)
    assert codes[0] == 124 and codes[-1] == 0, (codes, proc.stdout, proc.stderr)
    assert kept_decode == sorted(kept_decode) and kept_decode[-1] >= 1  # each cut kept what it measured
    # the runs that measured points: each cut that kept more than the one before it, and the last call
    runs = sum(b > a for a, b in itertools.pairwise(kept_counts)) + 1
    assert not (dest / "h200-m.points.json").exists()
    prof = load_profile(dest / "h200-m.json")
    assert [p.prompt_tokens for p in prof.prefill_points] == [64, 256, 1024] and len(prof.decode_points) == 4
    assert f"measured by {runs} runs" in prof.provenance.notes
    log = (dest / "h200-m.profile.log").read_text()  # the calls' logs, appended (a call cut at its start
    assert runs <= log.count("server: fake-model") <= len(codes) and "(resumed)" in log  # may log nothing)
