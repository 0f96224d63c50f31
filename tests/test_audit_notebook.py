"""notebooks/audit.ipynb runs top to bottom (so it never rots), and, where a Chromium is
installed, the HTML report renders headless with every image loaded."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from curate.audit import audit_command

ROOT = Path(__file__).parent.parent
NOTEBOOK = ROOT / "notebooks" / "audit.ipynb"
RUN = ROOT / "tests" / "fixtures" / "publish" / "run"


def test_notebook_executes():
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 3
    assert any("report.html" in o.get("text", "") for o in outputs)


CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


@pytest.mark.skipif(CHROMIUM is None, reason="no headless Chromium installed")
def test_report_renders_in_headless_chromium(tmp_path):
    report = audit_command(RUN, tmp_path / "report.html")
    # The DOM after load says whether each image decoded (naturalWidth > 0).
    probe = tmp_path / "probe.html"
    probe.write_text(report.read_text().replace(
        "</body>", "<script>document.title=[...document.images].every(i=>i.complete&&i.naturalWidth>0)"
        "?'IMAGES-OK':'IMAGES-BROKEN'</script></body>"))
    common = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu"]
    dom = subprocess.run([*common, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=60)
    assert "<title>IMAGES-OK</title>" in dom.stdout
    screenshot = tmp_path / "report.png"
    subprocess.run([*common, f"--screenshot={screenshot}", "--window-size=1200,2000", report.as_uri()],
                   capture_output=True, timeout=60)
    assert screenshot.read_bytes().startswith(b"\x89PNG")
