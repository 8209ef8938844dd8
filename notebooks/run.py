"""Executes the notebooks (stored without outputs) with nbclient in this checkout's venv and
writes the executed copies to reports/notebooks/, with each figure they drew as
`<notebook>_<n>.png` beside them; exits non-zero, naming the notebook and the cell, when one
fails. `make test` runs it.

    .venv/bin/python notebooks/run.py [NOTEBOOK ...]
"""

import base64
import pathlib
import sys

import nbclient
import nbformat

HERE = pathlib.Path(__file__).resolve().parent
OUT = HERE.parent / "reports" / "notebooks"


def run(path: pathlib.Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    if any(cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"):
        raise SystemExit(f"{path.name}: stored with outputs; clear them before committing")
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(HERE)}})
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as error:
        raise SystemExit(f"{path.name}: {error}") from None
    OUT.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, OUT / path.name)
    figures = [o["data"]["image/png"] for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs if "image/png" in o.get("data", {})]
    for n, figure in enumerate(figures, start=1):
        (OUT / f"{path.stem}_{n}.png").write_bytes(base64.b64decode(figure))
    print(f"{path.name}: executed, {len(notebook.cells)} cells, {len(figures)} figure(s) -> {OUT / path.name}")


if __name__ == "__main__":
    names = sys.argv[1:] or sorted(p.name for p in HERE.glob("*.ipynb"))
    for name in names:
        run(HERE / name)
