"""The review notebook (analysis/review.ipynb) runs headless over the golden results."""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient

from tests.analysis.golden import ONE, PD, REPO, SWEEP, TRAD
from tests.analysis.test_report import BASE_PLOTS, SWEEP_PLOTS


def test_review_notebook_executes_headless(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESTBED_RESULTS", ",".join(str(p) for p in (TRAD, *SWEEP)))
    nb = nbformat.read(REPO / "analysis" / "review.ipynb", as_version=4)
    client = NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(REPO / "analysis")}}
    )
    client.execute()  # raises CellExecutionError on any failing cell
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    markdown = "".join(o.get("data", {}).get("text/markdown", "") for o in outputs)
    assert f"| metric | {ONE}@4 | {PD}@4 | {PD}@4/{ONE}@4 | better |" in markdown
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == len(BASE_PLOTS) + len(SWEEP_PLOTS)
