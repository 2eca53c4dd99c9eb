"""The one result schema: every writer (client, runner, energy meter) and every reader (analysis,
notebook, planner) goes through these types.

    RunResult                      result.json + requests.jsonl; save / load (older versions upgraded)
      metadata: RunMetadata        provenance + mode, endpoint, model, serving_setup, config
        config: RunConfig          workload, arrival, SLOs, monitoring; sweep: Sweep | None
        serving_setup: ServingSetup   kind, label, connector, instances (role, GPU, version, settings)
      records: list[Record]        one request; derived ttft_ms, tpot_ms, e2el_ms, itl_ms ...
      summary: Summary             counts, tokens, Distributions; derived throughputs and goodput
      stages: StageSummary         the proxy's TTFT split
      energy: EnergySection        per-GPU windows (GpuEnergy) with idle power; derived split and totals
        attribution: EnergyAttribution   idle / per request and phase (records' `energy`: RequestEnergy)
        host: HostEnergy           CPU package and DRAM (RAPL), beside the GPUs
      server_metrics: {url: ServerMetrics}
      warnings: list[RunWarning]   code, message, observed, threshold

    vocabulary                     modes, setup kinds, GPU roles per mode, labels, campaign setup names
                                   and planner forms (single, replicas:N, xPyD): parsed and printed there

Fields marked `computed` are derived: written to JSON for readers without our code (pandas, jq) and
recomputed, never read back, on load.
"""

from experiments.schema.attribution import (
    PHASES,
    EnergyAttribution,
    GpuAttribution,
    PhaseTotals,
    PowerFit,
    RequestEnergy,
)
from experiments.schema.base import SchemaError, computed, convert, dumps, to_builtins
from experiments.schema.energy import (
    SCOPES,
    EnergyPhases,
    EnergySection,
    EnergyTotals,
    EnergyWindow,
    GpuEnergy,
    MonitorGpu,
    MonitorInfo,
    NodeClock,
    PowerTimeline,
    Scope,
)
from experiments.schema.host import HostEnergy, RaplZone
from experiments.schema.records import Record, StageTimes
from experiments.schema.result import (
    ARCHIVE_FILE,
    RECORDS_FILE,
    RESULT_FILE,
    ResultWriter,
    RunResult,
    archive_run,
    read_records_file,
    record_line,
    result_file,
)
from experiments.schema.run import (
    OVERLENGTH_POLICIES,
    WORKLOADS,
    ClockAnchor,
    GpuInfo,
    GpuInventory,
    Provenance,
    RunConfig,
    RunMetadata,
    ServerMetrics,
    Sweep,
    TraceInfo,
    WorkloadConfig,
)
from experiments.schema.run_warning import RunWarning
from experiments.schema.setup import Instance, InstanceSettings, ServingSetup
from experiments.schema.summary import STAGE_KEYS, Distribution, PathStats, StageSummary, Summary
from experiments.schema.upgrade import SCHEMA_VERSION
from experiments.schema.vocabulary import (
    AGGREGATED_KINDS,
    BASELINE_KIND,
    CAMPAIGN_SETUPS,
    KINDS,
    MODE_SPECS,
    MODES,
    SERVING_ROLES,
    CampaignSetup,
    Mode,
    ModeSpec,
    SetupForm,
    SetupKind,
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

__all__ = [
    "AGGREGATED_KINDS",
    "ARCHIVE_FILE",
    "BASELINE_KIND",
    "CAMPAIGN_SETUPS",
    "KINDS",
    "MODES",
    "MODE_SPECS",
    "OVERLENGTH_POLICIES",
    "PHASES",
    "RECORDS_FILE",
    "RESULT_FILE",
    "SCHEMA_VERSION",
    "SCOPES",
    "SERVING_ROLES",
    "STAGE_KEYS",
    "WORKLOADS",
    "CampaignSetup",
    "ClockAnchor",
    "Distribution",
    "EnergyAttribution",
    "EnergyPhases",
    "EnergySection",
    "EnergyTotals",
    "EnergyWindow",
    "GpuAttribution",
    "GpuEnergy",
    "GpuInfo",
    "GpuInventory",
    "HostEnergy",
    "Instance",
    "InstanceSettings",
    "Mode",
    "ModeSpec",
    "MonitorGpu",
    "MonitorInfo",
    "NodeClock",
    "PathStats",
    "PhaseTotals",
    "PowerFit",
    "PowerTimeline",
    "Provenance",
    "RaplZone",
    "Record",
    "RequestEnergy",
    "ResultWriter",
    "RunConfig",
    "RunMetadata",
    "RunResult",
    "RunWarning",
    "SchemaError",
    "Scope",
    "ServerMetrics",
    "ServingSetup",
    "SetupForm",
    "SetupKind",
    "StageSummary",
    "StageTimes",
    "Summary",
    "Sweep",
    "TraceInfo",
    "VocabularyError",
    "WorkloadConfig",
    "archive_run",
    "computed",
    "convert",
    "dumps",
    "form_of_roles",
    "gpu_roles_of_mode",
    "kind_of_mode",
    "kind_rank",
    "mode_of_kind",
    "parse_campaign_setups",
    "parse_form",
    "parse_kind",
    "parse_mode",
    "read_records_file",
    "record_line",
    "result_file",
    "setup_label",
    "to_builtins",
]
