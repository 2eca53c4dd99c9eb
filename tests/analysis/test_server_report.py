"""The server-side sections of report.md and the README tables, on committed 2 x H200 runs at 4 req/s
(1 instance, 1P1D P2P NCCL GET); runs without server metrics get no section."""

from __future__ import annotations

from pathlib import Path

from analysis.prometheus import Quantile
from analysis.render import render_markdown
from analysis.runs import NA, load_runs
from analysis.server_report import fmt_cell, main, server_sections
from analysis.tables import compare_results
from tests.analysis.golden import DIS, TRAD

FRONTIER = Path(__file__).resolve().parents[2] / "results" / "h200x2" / "frontier" / "prefill-heavy"
SINGLE4 = FRONTIER / "single" / "20261129-204307-traditional-rate4"
PD4 = FRONTIER / "pd" / "20261129-203423-disagg-rate4"
PD_LABEL = "1P1D p2p_nccl GET"


def test_cells_show_buckets_honestly() -> None:
    assert fmt_cell(Quantile(150.0, 0.0, 300.0)) == "< 300.0"  # the first bucket says only that
    assert fmt_cell(Quantile(202.3, 100.0, 250.0)) == "202.3 (100.0-250.0)"
    assert fmt_cell(Quantile(7680.0, 7680.0, float("inf"))) == "> 7,680"
    assert fmt_cell(NA("not stored: vllm:request_inference_time_seconds (why)")) == "n/a (not stored)"


def test_report_md_carries_the_server_side() -> None:
    report = render_markdown(compare_results([SINGLE4, PD4]))
    for title in (
        "## vLLM's own view (server /metrics over each run)",
        "## Where TTFT goes, from both sides",
        "## The decode side's first chunk and the KV transfer",
        "## The prefill instance beside independent instances",
    ):
        assert title in report
    assert f"| {PD_LABEL} | prefill0 (prefill) | 204 | 0.020 | < 300.0 | < 300.0 | 75.79 |" in report
    inference = "- not stored: vllm:request_inference_time_seconds (not exported by this vLLM or not kept"
    assert inference + " by the runner): 1 instance server (serving), " in report  # one note for all
    assert f"| {PD_LABEL} | decode0 (decode) | 204 |" in report and "| 99.95 |" in report
    assert "| ↳ P prefill | vLLM, prefill side | 75.79 | < 300.0 | < 300.0 |" in report
    assert f"| {PD_LABEL} | p2p_nccl | 27.94 | 0.00823 | ≈ 5.33 | ≈ 5.45 | 13.75 | 3.40 | 268.3 |" in report
    assert "computed from the model shape, not measured" in report
    assert "| 2048 -> 256 | 4 | 1 instance | 1 | 59.33 |" in report  # one load: runs are labelled by setup
    assert "mean prefill time of 76 ms against 59 ms on 1 instance" in report


def test_no_server_metrics_no_section() -> None:
    runs = load_runs([TRAD, DIS])
    assert server_sections(runs) == []
    assert "## vLLM's own view" not in render_markdown(compare_results([TRAD, DIS]))


def test_cli(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main([str(SINGLE4), str(PD4)]) == 0
    assert "## Where TTFT goes, from both sides" in capsys.readouterr().out
    assert main([str(FRONTIER / "no-such-run")]) == 2


CONNECTORS = Path(__file__).resolve().parents[2] / "results" / "h200x2" / "connectors"


def _one(pattern: str) -> Path:
    (path,) = sorted(CONNECTORS.glob(pattern))
    return path


def test_variants_of_one_setup_are_labelled_by_what_differs_and_nixl_telemetry_is_tabled() -> None:
    """The rate-12 launch variants on vLLM 0.26 share the label "1P1D nixl": the report names them by
    block size and UCX transports, not #2, #3; the NIXL table shows each run's descriptors."""
    paths = [_one(f"{v}/prefill-heavy/pd-nixl/*") for v in ("bs16", "bs128", "ucx-cuda-tcp", "push")]
    runs = load_runs(paths)
    assert sorted(r.label for r in runs) == [
        "1P1D nixl bs128",
        "1P1D nixl bs16",
        "1P1D nixl bs16 ucx_tls=cuda_ipc,cuda_copy,tcp",
        "1P1D nixl push",
    ]
    report = "\n".join(server_sections(runs))
    assert "| run | transfers | transfer mean (ms) | transfer p90 (ms) | post mean (ms) | descriptors" in (
        report
    )
    assert "| 1P1D nixl bs128 | 204 | 5.52 |" in report
    assert "| 47.06 | 9.19 | 268.4 |" in report  # 47 descriptors of 32 layers x 16 blocks of 128 tokens
    assert "| 1P1D nixl push | 204 | 20.13 |" in report  # read from P: push writes
    # runs that agree on everything but the load keep plain names; repeats still get #n
    same = load_runs([_one("bs16/prefill-heavy/pd-nixl/*"), _one("prefill-heavy/pd-nixl/*-rate12")])
    assert [r.label for r in same] == ["1P1D nixl", "1P1D nixl#2"]
    assert "| run | transfers |" not in "\n".join(server_sections(load_runs([SINGLE4, PD4])))
    # the runs table names each run's engine: vLLM version, and the connector of a P/D setup
    runs_table = render_markdown(compare_results([paths[0], SINGLE4], force=True)).split("## Offered load")[0]
    assert "| engine |" in runs_table and "| vLLM 0.26.0, nixl |" in runs_table
    assert "| vLLM 0.23.0 |" in runs_table
