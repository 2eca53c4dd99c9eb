"""A stand-in `vllm` package for launcher tests: put `tests/traditional/fake_vllm` first on PYTHONPATH
and the launchers' `python -m vllm.entrypoints.openai.api_server ...` starts a tiny /health server."""
