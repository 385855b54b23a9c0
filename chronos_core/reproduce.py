"""Headless reproduction: papermill executes notebooks/NN_*.ipynb in order with `reuse` set.

Executed copies go to results/executed/; a failing notebook stops the run with the notebook and
the cell named, in one line.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from chronos_core.errors import ChronosError

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
EXECUTED_DIR = REPO_ROOT / "results" / "executed"

log = logging.getLogger(__name__)


def notebooks(selection: list[str] | None = None, folder: Path = NOTEBOOK_DIR) -> list[Path]:
    """Numbered notebooks in order; `selection` filters by prefix ('03') or name ('03_fit_time')."""
    found = sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))
    if not selection:
        return found
    chosen = [p for p in found if any(p.stem == s or p.stem.startswith(s) for s in selection)]
    unknown = [s for s in selection if not any(p.stem == s or p.stem.startswith(s) for p in found)]
    if unknown:
        raise ChronosError(f"Unknown notebook {unknown[0]!r}. Known: {', '.join(p.stem for p in found)}")
    return chosen


def failed_cell(path: Path) -> str:
    """Describe the first cell of an executed notebook that raised (index and first source line)."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                first = (cell.source.strip().splitlines() or [""])[0][:80]
                return f"cell {index} ({first!r}): {output.get('ename')}: {output.get('evalue', '')[:200]}"
    return "unknown cell"


def run_notebook(path: Path, reuse: bool, output_dir: Path = EXECUTED_DIR, **parameters) -> Path:
    """Execute one notebook with papermill from the repo root; returns the executed copy."""
    import papermill

    output_dir.mkdir(parents=True, exist_ok=True)
    out = output_dir / path.name
    try:
        papermill.execute_notebook(
            str(path),
            str(out),
            parameters={"reuse": reuse, **parameters},
            cwd=str(REPO_ROOT),
            kernel_name="python3",
            progress_bar=False,
            log_output=False,
            extra_arguments=["--IPKernelApp.log_level=ERROR"],  # no "kernel over TCP" warning per notebook
        )
    except papermill.PapermillExecutionError:
        raise ChronosError(f"Notebook {path.name} failed at {failed_cell(out)} (see {out})") from None
    return out


def reproduce(reuse: bool = True, selection: list[str] | None = None) -> list[tuple[str, float]]:
    """Run the notebooks in order; returns (name, seconds) per notebook."""
    paths = notebooks(selection)
    if not paths:
        raise ChronosError(f"No numbered notebooks in {NOTEBOOK_DIR}")
    timings = []
    for path in paths:
        start = time.perf_counter()
        run_notebook(path, reuse)
        timings.append((path.stem, time.perf_counter() - start))
        log.info("%s done in %.1f s", path.stem, timings[-1][1])
    return timings
