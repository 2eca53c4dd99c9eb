"""The serving-setup vocabulary: every name parsed and printed back, unknown names refused in one line,
and the committed results without a recorded setup still read as their mode's kind."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments.schema import (
    CAMPAIGN_SETUPS,
    KINDS,
    MODES,
    RunResult,
    ServingSetup,
    SetupForm,
    VocabularyError,
    form_of_roles,
    gpu_roles_of_mode,
    kind_of_mode,
    kind_rank,
    mode_of_kind,
    parse_campaign_setups,
    parse_form,
    parse_kind,
    parse_mode,
    setup_label,
)

ROOT = Path(__file__).resolve().parents[3]

# (text, n_prefill, n_decode, kind, GPUs, printed name, report label)
FORMS = [
    ("single", 0, 1, "single", 1, "single", "1 instance"),
    ("SINGLE", 0, 1, "single", 1, "single", "1 instance"),
    ("replicas:1", 0, 1, "single", 1, "single", "1 instance"),
    ("replicas:2", 0, 2, "replicas", 2, "replicas:2", "2 replicas"),
    (" replicas:8 ", 0, 8, "replicas", 8, "replicas:8", "8 replicas"),
    ("1P1D", 1, 1, "xpyd", 2, "1P1D", "1P1D"),
    ("2p6d", 2, 6, "xpyd", 8, "2P6D", "2P6D"),
    ("10P3D", 10, 3, "xpyd", 13, "10P3D", "10P3D"),
]


@pytest.mark.parametrize(("text", "n_p", "n_d", "kind", "gpus", "name", "label"), FORMS)
def test_forms_parse_print_and_read_back(text, n_p, n_d, kind, gpus, name, label) -> None:
    form = parse_form(text)
    assert (form.n_prefill, form.n_decode, form.kind, form.gpus) == (n_p, n_d, kind, gpus)
    assert form.name == str(form) == name
    assert parse_form(form.name) == form
    assert form.label() == label


def test_an_xpyd_label_names_its_connector() -> None:
    assert parse_form("1P1D").label("nixl") == "1P1D nixl"
    assert parse_form("2P2D").label("p2p_nccl") == "2P2D p2p_nccl"


@pytest.mark.parametrize(
    "text", ["", "1P", "P1D", "0P2D", "replicas", "replicas:", "replicas:x", "2 replicas"]
)
def test_an_unknown_form_is_one_line_naming_the_valid_ones(text: str) -> None:
    with pytest.raises(VocabularyError) as err:
        parse_form(text)
    message = str(err.value)
    assert "\n" not in message and repr(text) in message
    assert "single, replicas:N or xPyD" in message


@pytest.mark.parametrize(("n_p", "n_d"), [(0, 0), (1, 0), (-1, 2)])
def test_impossible_counts_are_refused(n_p: int, n_d: int) -> None:
    with pytest.raises(VocabularyError, match=">= 1 decode"):
        SetupForm(n_p, n_d)
    with pytest.raises(ValueError):  # the planner catches ValueError: VocabularyError is one
        parse_form("replicas:0")


def test_modes_name_their_kind_and_gpu_roles() -> None:
    assert MODES == ("traditional", "disagg", "passthrough")
    table = {m: (kind_of_mode(m), gpu_roles_of_mode(m)) for m in MODES}
    assert table == {
        "traditional": ("single", ("serving", "idle")),
        "disagg": ("xpyd", ("prefill", "decode")),
        "passthrough": ("replicas", ("serving", "serving")),
    }
    assert {k: mode_of_kind(k) for k in KINDS} == {
        "single": "traditional",
        "xpyd": "disagg",
        "replicas": "passthrough",
    }
    assert [parse_mode(m) for m in MODES] == list(MODES)
    assert kind_of_mode("hybrid") == "unknown"


@pytest.mark.parametrize(
    ("call", "text", "valid"),
    [
        (parse_mode, "disaggregated", "traditional, disagg, passthrough"),
        (parse_mode, "Disagg", "traditional, disagg, passthrough"),
        (gpu_roles_of_mode, "single", "traditional, disagg, passthrough"),
        (mode_of_kind, "unknown", "single, xpyd, replicas"),
        (parse_campaign_setups, "single,pd-nccl", "single, replicas, pd, pd-nixl"),
    ],
)
def test_unknown_names_are_one_line_naming_the_valid_ones(call, text: str, valid: str) -> None:
    with pytest.raises(VocabularyError) as err:
        call(text)
    message = str(err.value)
    assert "\n" not in message and message.endswith(f"choose one of {valid}")
    assert repr(text.split(",")[-1]) in message


def test_kinds_sort_for_reports_and_other_kinds_read_as_unknown() -> None:
    assert [kind_rank(k) for k in ("single", "xpyd", "replicas", "unknown", "P/D")] == [0, 1, 2, 3, 3]
    assert [parse_kind(k) for k in ("single", "xpyd", "replicas", "1P1D", None, 3)] == [
        "single",
        "xpyd",
        "replicas",
        "unknown",
        "unknown",
        "unknown",
    ]


def test_labels_as_the_reports_print_them() -> None:
    assert setup_label("single", 1) == "1 instance"
    assert setup_label("replicas", 4) == "4 replicas"
    assert setup_label("xpyd", 2, n_prefill=1, n_decode=1) == "1P1D"  # no connector recorded
    pd = {"n_prefill": 1, "n_decode": 1}
    assert setup_label("xpyd", 2, **pd, connector="p2p_nccl", send_type="GET") == "1P1D p2p_nccl GET"
    assert setup_label("xpyd", 2, **pd, connector="nixl", push=True) == "1P1D nixl push"
    assert setup_label("xpyd", 2, **pd, connector="nixl", policy="split") == "1P1D nixl"
    assert (
        setup_label("xpyd", 3, n_prefill=1, n_decode=2, connector="nixl", policy="threshold:1024")
        == "1P2D nixl threshold:1024"
    )


def test_campaign_setups_keep_their_order_mode_and_connector() -> None:
    assert list(CAMPAIGN_SETUPS) == ["single", "replicas", "pd", "pd-nixl"]
    got = [
        (s.name, s.mode, s.kind, s.connector, s.gpu_roles) for s in parse_campaign_setups("pd-nixl,,single")
    ]
    assert got == [
        ("pd-nixl", "disagg", "xpyd", "nixl", ("prefill", "decode")),
        ("single", "traditional", "single", None, ("serving", "idle")),
    ]
    assert parse_campaign_setups("") == []


def test_recorded_setups_and_old_results_give_their_form() -> None:
    pd = ServingSetup(kind="xpyd", num_instances=3, num_prefill=2, num_decode=1)
    assert pd.form == SetupForm(2, 1)
    assert ServingSetup(kind="replicas", num_instances=4).form == SetupForm(0, 4)
    assert ServingSetup(kind="unknown", num_instances=2).form is None
    assert ServingSetup(kind="xpyd", num_instances=2).form is None  # counts not recorded
    assert form_of_roles("disagg", ["prefill", "decode", "decode"]) == SetupForm(1, 2)
    assert form_of_roles("traditional", ["serving", "idle"]) == SetupForm(0, 1)
    assert form_of_roles("passthrough", ["serving"] * 4) == SetupForm(0, 4)
    assert form_of_roles("disagg", ["serving", "serving"]) is None
    assert form_of_roles("traditional", ["idle"]) is None


@pytest.mark.parametrize(
    ("run", "mode", "kind"),
    [
        ("20261122-044458-traditional-rate4", "traditional", "single"),
        ("20261122-044143-disagg-rate4", "disagg", "xpyd"),
        ("20261122-044803-passthrough-rate4", "passthrough", "replicas"),
    ],
)
def test_committed_results_without_a_setup_read_as_their_modes_kind(run: str, mode: str, kind: str) -> None:
    meta = RunResult.load(ROOT / "results" / "h200x2" / run).metadata
    assert meta.serving_setup is None and meta.mode == mode
    assert meta.setup_kind == kind and meta.setup_name == mode


def test_a_recorded_setup_wins_over_the_mode() -> None:
    run = ROOT / "results/h200x2/frontier/prefill-heavy/replicas/20261129-202607-passthrough-rate4"
    meta = RunResult.load(run).metadata
    assert meta.mode == "passthrough" and meta.serving_setup is not None
    assert (meta.setup_kind, meta.setup_name, meta.serving_setup.form) == (
        "replicas",
        "2 replicas",
        SetupForm(0, 2),
    )
