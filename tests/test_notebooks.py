"""Every paper notebook: runs through papermill in smoke mode, imports cheaply, and is committed in order."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from lossbook.runner import STATUSES, find_notebooks, run_notebook

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = find_notebooks(ROOT / "nbs")
ids = [i.slug for i in NOTEBOOKS]


def test_some_notebooks_found():
    assert NOTEBOOKS, "no paper notebook found under nbs/"


@pytest.mark.notebook
@pytest.mark.parametrize("info", NOTEBOOKS, ids=ids)
def test_notebook_smoke(info, tmp_path):
    rec = run_notebook(info, smoke=True, out=tmp_path, device="cpu", threads=1)
    assert rec["ok"], f"{info.slug} failed in cell {rec.get('cell')}:\n{rec.get('cell_source')}\n{rec.get('error')}"
    assert rec["verdict"]["status"] in STATUSES and rec["metrics"]


@pytest.mark.parametrize("info", NOTEBOOKS, ids=ids)
def test_module_import_is_cheap(info):
    mod = f"lossbook.{info.theme}.{info.slug}"
    code = (f"import sys, {mod}\nheavy = [m for m in ('papermill', 'matplotlib', 'seaborn', 'pandas', 'sklearn') "
            "if m in sys.modules]\nassert not heavy, heavy")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, f"import {mod} pulled in: {r.stderr.strip().splitlines()[-1]}"


@pytest.mark.parametrize("info", NOTEBOOKS, ids=ids)
def test_committed_with_full_mode_outputs(info):
    nb = json.loads(info.path.read_text(encoding="utf-8"))
    cells = nb["cells"]
    assert not any("injected-parameters" in c["metadata"].get("tags", []) for c in cells), "papermill's cell is committed"
    assert "smoke" in info.params and info.params["smoke"] is None, "the parameters cell must keep smoke = None"
    assert any(c.get("outputs") for c in cells if c["cell_type"] == "code"), "committed without outputs"
    res = ROOT / "results" / f"{info.slug}.json"
    assert res.exists(), f"results/{info.slug}.json is missing: run `lossbook refresh {info.slug}`"
    rec = json.loads(res.read_text())
    assert rec["ok"] and rec["mode"] == "full" and rec["verdict"]["status"] in STATUSES
