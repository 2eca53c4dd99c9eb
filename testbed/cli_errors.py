"""Argument parsing whose errors are one line (`error: ...`), as every testbed CLI promises, and the
argument types several CLIs share."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import NoReturn, TypeVar

T = TypeVar("T")


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse without the usage block before an error: one line on stderr, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def arg_type(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse `type` from a parser whose ValueError says what is wrong: argparse shows that message
    (a plain ValueError would read "invalid <name> value")."""

    def typed(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    typed.__name__ = parse.__name__
    return typed


def parse_gpu_ids(text: str) -> list[int]:
    """--gpu-ids: comma-separated GPU indices (CUDA / NVML), e.g. 0,1; '' is none (a run on CPU)."""
    try:
        ids = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"{text!r} is not a comma-separated list of GPU indices, e.g. 0,1") from None
    if ids and min(ids) < 0:
        raise ValueError(f"--gpu-ids {text!r}: GPU indices are >= 0, e.g. 0,1")
    return ids
