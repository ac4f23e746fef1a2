"""examples/tour.ipynb: stored without outputs, and it runs headless from top to bottom."""

import json
import os

import pytest

from conftest import ROOT

TOUR = ROOT / "examples" / "tour.ipynb"


def test_tour_is_stored_without_outputs():
    nb = json.loads(TOUR.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    assert set(nb["metadata"]) <= {"kernelspec", "language_info"}


def test_tour_runs_headless(monkeypatch):
    nbformat = pytest.importorskip("nbformat", reason="the notebook test needs nbformat, nbclient and ipykernel (test extra)")
    nbclient = pytest.importorskip("nbclient", reason="the notebook test needs nbclient (test extra)")
    pytest.importorskip("ipykernel", reason="the notebook test needs ipykernel (test extra)")
    from nbclient.exceptions import CellExecutionError

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    nb = nbformat.read(TOUR, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(TOUR.parent)}})  # as opened from examples/
    try:
        client.execute()
    except CellExecutionError:
        raise
    except Exception as exc:  # no kernel could start here (no ports, no ipykernel spec): not the notebook's fault
        pytest.skip(f"a Jupyter kernel could not start: {type(exc).__name__}: {exc}")
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "E = 0.298371109, dE/dw5 = 0.082167041, dE/dw1 = 0.000438568" in text
    assert "largest difference from PyTorch" in text or "skipped" in text
    kinds = [k for o in outputs for k in o.get("data", {})]
    assert "text/html" in kinds and "image/png" in kinds  # the report rendered, the loss curve inline
