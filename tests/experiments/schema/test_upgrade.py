"""Results written with schema 1.0 (everything committed under results/) load as 2.0: the same records,
and the derived numbers recomputed from them equal what the 1.0 code stored."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from experiments.metrics import compute_summary, stage_summary
from experiments.schema import SCHEMA_VERSION, RunResult, to_builtins
from experiments.schema.upgrade import from_1_0, upgrade

REPO = Path(__file__).resolve().parents[3]
# Committed runs only: results/runs, results/demo and results/report hold local (git-ignored) outputs.
LOCAL = ("runs", "demo", "report")
COMMITTED = sorted(
    p
    for p in (REPO / "results").rglob("result.json")
    if p.relative_to(REPO / "results").parts[0] not in LOCAL
)
DISTRIBUTIONS = (
    "ttft_ms",
    "tpot_ms",
    "itl_ms",
    "itl_req_avg_ms",
    "tbt_max_ms",
    "e2el_ms",
    "send_lateness_ms",
)


def v1(path: Path) -> dict:
    doc = orjson.loads(path.read_bytes())
    assert doc["schema_version"] == "1.0"
    return doc


def test_there_are_committed_1_0_results() -> None:
    assert len(COMMITTED) >= 12
    assert any("h200x2" in str(p) for p in COMMITTED) and any("cpu-xpyd" in str(p) for p in COMMITTED)


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.parent.name)
def test_committed_result_loads_and_recomputes_what_1_0_stored(path: Path) -> None:
    old = v1(path)
    res = RunResult.load(path)
    assert res.complete and res.metadata.mode == old["metadata"]["mode"]
    assert len(res.records) == len(old["records"])
    assert [r.chunk_mono_ns for r in res.records] == [r["chunk_mono_ns"] for r in old["records"]]

    summary = compute_summary(res.records, res.metadata.config.slo)
    stored = old["summary"]
    assert (summary.completed, summary.failed, summary.measured) == (
        stored["completed"],
        stored["failed"],
        stored["measured"],
    )
    assert summary.duration_s == stored["duration_s"]
    assert (summary.request_throughput, summary.goodput) == (stored["request_throughput"], stored["goodput"])
    for key in DISTRIBUTIONS:  # the same definitions give the same floats
        assert to_builtins(summary.distribution(key)) == stored[key], key
    stages = to_builtins(stage_summary(res.records))
    if stages is not None:  # the runner that wrote these summed client_side_ms in another order
        client, stored_client = stages.pop("client_side_ms"), old["stages"].pop("client_side_ms")
        assert client == pytest.approx(stored_client, rel=1e-12)
        assert stages.pop("paths") == {}  # added with the proxy's policies: no path recorded then
    assert stages == old["stages"]

    energy = res.to_dict()["energy"]
    if not old["energy"]["available"]:
        assert energy == {"available": False, "reason": old["energy"]["reason"], **_empty_energy()}
        return
    for scope in ("all_gpus", "serving_gpus"):
        assert energy["totals"][scope] == old["energy"]["totals"][scope]  # same floats, same order
    for ours, theirs in zip(energy["gpus"], old["energy"]["gpus"], strict=True):
        assert ours == {k: v for k, v in theirs.items() if k != "gpu"}
    assert energy["phases"] == old["energy"]["phases"]
    assert res.energy is not None and res.energy.idle_seconds == old["energy"]["idle_baseline"]["seconds"]


def _empty_energy() -> dict:
    keys = ("method", "window", "idle_seconds", "monitor", "timeline", "power_csv", "attribution", "host")
    keys += ("complete", "phases")
    return {**dict.fromkeys(keys), "gpus": []}


def test_what_moved_from_1_0_to_2_0() -> None:
    path = next(p for p in COMMITTED if p.parent.name.endswith("disagg-rate4"))
    old = v1(path)
    old["metadata"]["config"]["extra"] = {"sweep": {"id": "s", "rates": [4.0], "rate": 4.0, "seed_offset": 0}}
    old["server_metrics"]["http://gone"] = {"error": "connection refused"}
    new = from_1_0(old)
    assert new["schema_version"] == "2.0" and "schema_version" not in new["metadata"]
    assert new["metadata"]["config"]["sweep"]["id"] == "s" and "extra" not in new["metadata"]["config"]
    assert new["server_metrics"]["http://gone"] == {"deltas": {}, "error": "connection refused"}
    url = "http://127.0.0.1:8100"
    assert new["server_metrics"][url] == {"deltas": old["server_metrics"][url], "error": None}
    energy = new["energy"]
    assert energy["idle_seconds"] == 5.0 and "idle_baseline" not in energy
    assert not {"gpu", "static_j", "dynamic_j"} & energy["gpus"][0].keys()
    assert not {"windows", "idle_power_w", "static_dynamic_split"} & energy["monitor"].keys()
    assert "send_lateness_ns" not in new["records"][0]
    current = upgrade(new, "2.0 doc")
    assert current["schema_version"] == SCHEMA_VERSION
    assert upgrade(current, "current doc") is current  # the current version passes through


def test_a_2_0_result_loads_as_2_1_with_nothing_cancelled_and_its_chunks_counted(tmp_path: Path) -> None:
    res = RunResult.load(COMMITTED[0])
    doc = res.to_dict()
    doc["schema_version"] = "2.0"
    for key in ("cancelled", "chunks", "coalesced_chunks", "coalesced_chunk_share"):
        del doc["summary"][key]
    for rec in doc["records"]:
        del rec["cancelled"]
    (tmp_path / "result.json").write_bytes(orjson.dumps(doc, option=orjson.OPT_NON_STR_KEYS))
    old = RunResult.load(tmp_path)
    # 2.0 did not count chunks: the load counts them from the records (measured, successful ones).
    chunks = sum(len(r["chunk_mono_ns"]) for r in doc["records"] if r["measured"] and r["succeeded"])
    assert chunks > 0
    assert old.summary is not None and (old.summary.cancelled, old.summary.chunks) == (0, chunks)
    assert not any(r.cancelled for r in old.records) and len(old.records) == len(res.records)


def test_an_upgraded_result_saves_as_2_0_and_loads_the_same(tmp_path: Path) -> None:
    res = RunResult.load(COMMITTED[0])
    again = RunResult.load(res.save(tmp_path / "copy"))
    assert orjson.loads((tmp_path / "copy" / "result.json").read_bytes())["schema_version"] == SCHEMA_VERSION
    assert again.to_dict() == res.to_dict()


def test_free_text_warnings_of_a_2_1_result_load_typed(tmp_path: Path) -> None:
    res = RunResult.load(COMMITTED[0])
    doc = res.to_dict()
    doc["schema_version"] = "2.1"
    doc["warnings"] = [
        "not a steady state: arrivals lasted 8.7 s, under 3 mean E2E latencies (3.3 s each); ...",
        "send lateness p99 7.0 ms (above 5 ms): the client sent requests late ...",
        "something else a newer runner said",
    ]
    (tmp_path / "result.json").write_bytes(orjson.dumps(doc, option=orjson.OPT_NON_STR_KEYS))
    old = RunResult.load(tmp_path)
    assert [(w.code, w.observed, w.threshold) for w in old.warnings] == [
        ("not_steady", None, None),
        ("send_lateness", None, None),
        ("unclassified", None, None),
    ]
    assert [w.message for w in old.warnings] == doc["warnings"]
    again = RunResult.load(old.save(tmp_path / "copy"))  # written as 2.2, read back the same
    assert again.warnings == old.warnings
