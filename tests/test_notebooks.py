"""Every numbered notebook runs headless from a clean kernel with reuse=True (what `make reproduce` does)."""

from __future__ import annotations

import json

import pytest

from chronos_core.reproduce import notebooks, run_notebook

NOTEBOOKS = notebooks()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_with_reuse(path, tmp_path, mirror):
    executed = run_notebook(path, reuse=True, output_dir=tmp_path)
    assert executed.exists()


def test_notebooks_have_a_parameters_cell_with_reuse_and_no_outputs():
    import nbformat

    assert NOTEBOOKS, "no numbered notebooks found"
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1 and "reuse" in tagged[0].source, path.name
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), (
            f"{path.name} has outputs"
        )
        ids = [c.get("id") for c in json.loads(path.read_text())["cells"]]  # nbformat.read fills them in
        assert all(ids) and len(set(ids)) == len(ids), f"{path.name}: each cell needs its own id"
