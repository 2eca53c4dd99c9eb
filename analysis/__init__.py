"""The analysis wing: reads results (only through experiments.schema) and compares them.

One concern per module, in the order the data flows:
    runs           load results, recompute summaries, name runs by serving setup and load
    comparability  what must match between compared runs
    tables         one metric table per offered load, the TTFT split, the load-sweep rows
    render         report.md and the terminal tables
    plots          the report's figures
    setup_sweeps   which runs form one setup's rate sweep (one workload shape); sweeps mixing setups refused
    sustained      the one sustained-rate rule (highest rate meeting a level, realized offered-rate axis)
    frontier       SLO attainment per rate, sustained rate per SLO cell per GPU and per kW, winners
    frontier_render / frontier_plots   frontier.md and its figures
The server side (vLLM's own /metrics deltas), rendered into report.md by server_report:
    prometheus         counters, histograms and their quantiles from the stored deltas
    server_view        per instance: queue, prefill, TTFT, decode; external KV share
    ttft_sides         where TTFT goes in a P/D run, from the proxy and from vLLM
    connector_cost     the decode side's first chunk, KV bytes and transfer rate
    prefill_inflation  the prefill instance beside independent ones, with the records' evidence
Entry points: compare_performance.py (--frontier DIR), analysis/review.ipynb; speed: bench_frontier.
Nothing in experiments/ imports this.

    from analysis.tables import compare_results
    from analysis.render import render_markdown
    print(render_markdown(compare_results(["results/runs/a", "results/runs/b"], slo={"ttft": 1000})))
"""
