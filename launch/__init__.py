"""What both launchers share: one vLLM process (`server`), a run directory's group of them
(`supervise`: start-up wait, foreground hold, stop), and the common flags and launch plan (`cli`).

`traditional/` (one instance) and `disagg/` (prefill, decode and the proxy) are thin CLIs over it.
"""
