"""examples/quickstart.ipynb runs top to bottom in a real Jupyter kernel (nbclient + ipykernel), and every
result cell shows its report as HTML."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

pytestmark = pytest.mark.slow  # a kernel and a minute of training

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"


def test_the_quickstart_notebook_runs_and_shows_its_reports(tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")  # committed clean
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    html = [out["data"]["text/html"] for cell in notebook.cells if cell.cell_type == "code"
            for out in cell.get("outputs", []) if "text/html" in out.get("data", {})]
    titles = ["losslab regress: ok", "losslab compare-optimizers: ok", "losslab lr-sweep --range-test: ok",
              "losslab compare-losses: ok"]
    for title in titles:
        assert any(title in h for h in html), title
    errors = [out for cell in notebook.cells for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    assert not errors


def test_progress_in_a_notebook_is_one_display_updated_in_place(tmp_path):
    from nbformat.v4 import new_code_cell, new_notebook

    notebook = new_notebook(cells=[
        new_code_cell("import losslab\nfit = losslab.regress(epochs=2000)\nfit.status"),
        new_code_cell("runs = losslab.compare_optimizers(optims=['sgd', 'adam'], seeds=2, epochs=50, no_vectorize=True)"
                      "\nruns.status"),
    ])
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    for cell, command in zip(notebook.cells, ("regress", "compare-optimizers")):
        kinds = [out["output_type"] for out in cell.outputs]
        assert kinds == ["display_data", "execute_result"], kinds  # no line per epoch, nothing on stderr
        shown = cell.outputs[0]["data"]["text/plain"]
        assert shown.startswith(f"losslab {command}: ok in ")  # the display ends with the outcome
        assert cell.outputs[1]["data"]["text/plain"] == "'ok'"
