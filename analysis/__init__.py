"""The analysis wing: reads results (only through experiments.schema) and compares them.

One concern per module, in the order the data flows:
    runs           load results, recompute summaries, name runs by serving setup and load
    comparability  what must match between compared runs
    tables         one metric table per offered load, the TTFT split, the load-sweep rows
    render         report.md and the terminal tables
    plots          the report's figures
    setup_sweeps   which runs form one setup's rate sweep (one workload shape); sweeps mixing setups refused
    frontier       SLO attainment per rate, sustained rate per SLO cell per GPU and per kW, winners
    frontier_render / frontier_plots   frontier.md and its figures
Entry points: compare_performance.py (--frontier DIR) and analysis/review.ipynb; speed: bench_frontier.
Nothing in experiments/ imports this.

    from analysis.tables import compare_results
    from analysis.render import render_markdown
    print(render_markdown(compare_results(["results/runs/a", "results/runs/b"], slo={"ttft": 1000})))
"""
