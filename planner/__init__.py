"""Placement planner: profile one vLLM instance, simulate setups we cannot rent, search xPyD ratios.

`python -m planner profile|simulate|search` (see planner/cli.py). Modules, in data-flow order:
profile_run (measure) -> profile_model + fits (the versioned profile file) -> workload (lengths and
arrivals from experiments/) -> setups, selection, engine, simulate (the discrete-event simulation) ->
outcome (latency, SLO attainment, goodput, energy) -> search, plots. measured.py is the one place that
reads measured results.
"""
