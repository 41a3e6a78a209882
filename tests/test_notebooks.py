"""Every paper notebook: runs through papermill in smoke mode, imports cheaply, and is committed in order."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from lossbook.runner import STATUSES, find_notebooks, run_notebook
from lossbook.verdict import recompute

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


def _headings(nb: dict) -> list[tuple[int, str]]:
    "(cell index, '## ...' heading) of every level-2 heading in markdown cells."
    out = []
    for i, c in enumerate(nb["cells"]):
        if c["cell_type"] == "markdown":
            out += [(i, line.strip()) for line in "".join(c["source"]).splitlines() if line.startswith("## ")]
    return out


@pytest.mark.parametrize("info", NOTEBOOKS, ids=ids)
def test_claim_declared_before_the_reproduction(info):
    nb = json.loads(info.path.read_text(encoding="utf-8"))
    heads = dict((h, i) for i, h in reversed(_headings(nb)))
    assert "## What we test" in heads, "no '## What we test' section"
    assert "## Reproduction" in heads, "no '## Reproduction' section"
    test_at, repro_at = heads["## What we test"], heads["## Reproduction"]
    assert test_at < repro_at, "'## What we test' must come before '## Reproduction'"
    code = [(i, "".join(c["source"])) for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"]
    declared = [i for i, src in code if "Claim(" in src]
    assert declared and all(test_at < i < repro_at for i in declared), \
        "the Claim must be built in 'What we test', between that heading and '## Reproduction'"
    observed = [i for i, src in code if ".observe(" in src or ".check(" in src]
    assert observed and min(observed) > repro_at, "results are observed only in the reproduction, after the declaration"


@pytest.mark.parametrize("info", NOTEBOOKS, ids=ids)
def test_record_recomputes_by_the_shared_rule(info):
    res = ROOT / "results" / f"{info.slug}.json"
    assert res.exists(), f"results/{info.slug}.json is missing: run `lossbook refresh {info.slug}`"
    rec = json.loads(res.read_text())
    v = rec["verdict"]
    for key in ("claim", "status", "evidence", "primary", "comparisons", "gates"):
        assert key in v, f"the record's verdict has no {key!r}"
    for name, c in v["comparisons"].items():
        assert {"kind", "metric", "method", "baseline", "method_values", "baseline_values", "outcome", "p_value"} <= set(c), name
        assert ("higher_is_better" in c) if c["kind"] == "better" else ("margin" in c), name
    for name, g in v["gates"].items():
        assert {"passed", "detail"} <= set(g), name
    outcomes, status = recompute(v)
    assert outcomes == {n: c["outcome"] for n, c in v["comparisons"].items()}
    assert status == v["status"]
    assert set(info.params) <= set(rec["params"]), \
        f"the record's params lack {sorted(set(info.params) - set(rec['params']))}"
