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


def _images_and_tables(cell):
    kinds = [(out["output_type"], sorted(out.get("data", {}))) for out in cell.outputs]
    images = sum("image/png" in data for _, data in kinds)
    tables = sum(out.get("data", {}).get("text/html", "").count("<table") for out in cell.outputs)
    return kinds, images, tables


def test_a_result_shows_once_as_a_table_with_its_plot_and_plot_shows_its_figure_once(tmp_path):
    """In a fresh kernel (no magic), after `%matplotlib inline`, and beside pyplot: a result as a cell's last line
    is one output (an HTML table, the plot inline), and `.plot()` one PNG."""
    from nbformat.v4 import new_code_cell, new_notebook

    notebook = new_notebook(cells=[
        new_code_cell("import losslab\nfit = losslab.regress(epochs=50, progress=False)"),
        new_code_cell("fit"),
        new_code_cell("fit.plot()"),
        new_code_cell("%matplotlib inline\nfit.plot()"),
        new_code_cell("import matplotlib.pyplot as plt\nplt.plot([1, 2])\nfit.plot()"),
        new_code_cell("runs = losslab.compare_optimizers(optims=['sgd', 'adam'], seeds=2, epochs=50, progress=False)"
                      "\nruns"),
    ])
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    cells = notebook.cells
    assert cells[0].outputs == []  # progress off: the call itself shows nothing
    for shown in (cells[1], cells[5]):
        kinds, images, tables = _images_and_tables(shown)
        assert kinds == [("execute_result", ["text/html", "text/plain"])], kinds  # once: no console leak
        html = shown.outputs[0]["data"]["text/html"]
        assert tables >= 1 and "<img src='data:image/png;base64," in html and "<!DOCTYPE" not in html
        assert "diagnosis" in html and "losslab" in shown.outputs[0]["data"]["text/plain"]
    assert all(f">{name}<" in cells[5].outputs[0]["data"]["text/html"] for name in ("sgd", "adam"))  # table rows
    for cell in cells[2:4]:
        kinds, images, _ = _images_and_tables(cell)
        assert images == 1 and len(kinds) == 1, kinds  # the figure once, with or without the magic
    kinds, images, _ = _images_and_tables(cells[4])
    assert images == 2, kinds  # the user's own pyplot figure, and ours once
