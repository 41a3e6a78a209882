"""The runner and the `lossbook` command on small fake paper notebooks (fast: each runs a few trivial cells)."""
import json

import nbformat
import pytest
from fake_notebooks import fake_notebook as _nb

from lossbook import runner
from lossbook.runner import (
    find_notebooks,
    main,
    notebook_params,
    parse_value,
    record,
    resolve_smoke,
    select,
    strip_papermill,
    write_json_atomic,
)


@pytest.fixture
def book(tmp_path):
    nbs = tmp_path / "nbs"
    ok = ("from lossbook.verdict import Claim\n"
          "c = Claim('c').better('acc', metric='acc', method='m', baseline='b', data='toy', primary=True)\n"
          "c.better('other', metric='acc', method='m', baseline='b', data='toy')\n"
          "n = 1 if smoke else 3\nprint('seeds', seeds[:n])\n"
          "c.observe('acc', [lr + 0.1, lr + 0.2, lr + 0.15][:n], [lr] * n).observe('other', [lr] * n, [lr] * n)\n"
          "_ = record({'acc': [lr] * n, 'n': n}, c, key_metrics={'acc': lr})")
    files = {
        ("alpha", "a_ok"): _nb(1, "a_ok", "alpha", ok),
        ("alpha", "b_fail"): _nb(2, "b_fail", "alpha", "x = 1\nraise RuntimeError('boom at seed 0')"),
        ("beta", "c_norecord"): _nb(3, "c_norecord", "beta", "y = 2"),
    }
    for (theme, slug), nb in files.items():
        (nbs / theme).mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, nbs / theme / f"{slug}.ipynb")
    (nbs / "core").mkdir()
    nbformat.write(nbformat.v4.new_notebook(), nbs / "core" / "00_core.ipynb")
    (tmp_path / "settings.ini").write_text("[DEFAULT]\n")
    return nbs


def test_resolve_smoke(monkeypatch):
    monkeypatch.delenv("LOSSBOOK_SMOKE", raising=False)
    assert resolve_smoke(None) is False and resolve_smoke(True) is True
    monkeypatch.setenv("LOSSBOOK_SMOKE", "1")
    assert resolve_smoke(None) is True and resolve_smoke(False) is False


def test_record_writes_atomically(tmp_path, monkeypatch):
    target = tmp_path / "part.json"
    monkeypatch.setenv("LOSSBOOK_RECORD", str(target))
    import numpy as np
    import torch

    from lossbook.verdict import Claim
    c = Claim("claim").better("a", metric="m", method="x", baseline="y", data="d", primary=True)
    c.observe("a", [1.0, 2.0, 3.0], [0.0, 0.5, 1.0])
    rec = record({"a": torch.tensor([1.0, 2.0]), "b": np.float64(0.5), "c": float("nan")}, c)
    assert json.loads(target.read_text()) == rec
    assert rec["metrics"] == {"a": [1.0, 2.0], "b": 0.5, "c": None}
    assert rec["verdict"]["status"] == "reproduced" and rec["verdict"]["comparisons"]["a"]["method_values"] == [1.0, 2.0, 3.0]
    assert [p.name for p in tmp_path.iterdir()] == ["part.json"]  # no temporary left behind
    assert (target.stat().st_mode & 0o777) == 0o644
    with pytest.raises(TypeError, match="Claim"):
        record({}, "c")


def test_write_json_atomic_never_leaves_half_a_file(tmp_path):
    p = tmp_path / "r.json"
    write_json_atomic(p, {"a": 1})
    with pytest.raises(TypeError):
        write_json_atomic(p, {"a": object()})  # fails while serialising
    assert json.loads(p.read_text()) == {"a": 1}  # the old record is intact
    assert sorted(x.name for x in tmp_path.iterdir()) == ["r.json"]


def test_discovery_and_selection(book):
    nbs = find_notebooks(book)
    assert [(i.card, i.slug, i.theme) for i in nbs] == [(1, "a_ok", "alpha"), (2, "b_fail", "alpha"), (3, "c_norecord", "beta")]
    assert nbs[0].params == {"smoke": None, "seeds": [0, 1, 2], "lr": 0.1}
    assert [i.slug for i in select(["alpha"], nbs)] == ["a_ok", "b_fail"]
    assert [i.slug for i in select(["3", "a_ok"], nbs)] == ["a_ok", "c_norecord"]
    assert len(select(["all"], nbs)) == 3
    with pytest.raises(ValueError, match="no paper notebook matches 'zeta'"):
        select(["zeta"], nbs)


def test_parse_value():
    assert parse_value("3") == 3 and parse_value("[0, 1]") == [0, 1] and parse_value("True") is True
    assert parse_value("cosine") == "cosine"


def test_notebook_params_refuses_non_literals():
    nb = _nb(9, "x", "t", "", params="import os\nsmoke = os.environ.get('X')")
    with pytest.raises(ValueError, match="smoke is not a literal"):
        notebook_params(nb)


def test_unknown_parameter_refused_before_running(book, tmp_path, capsys):
    out = tmp_path / "runs"
    rc = main(["--nbs", str(book), "run", "a_ok", "--smoke", "-p", "learning_rate", "0.5", "--out", str(out)])
    assert rc == 2
    assert "unknown parameter(s) learning_rate" in capsys.readouterr().err
    assert not out.exists()


def test_run_records_failures_and_goes_on(book, tmp_path, capsys):
    out = tmp_path / "runs"
    rc = main(["--nbs", str(book), "run", "all", "--smoke", "-p", "lr", "0.25", "--out", str(out)])
    assert rc == 1
    text = capsys.readouterr().out
    assert "1 passed, 2 failed" in text and "RuntimeError: boom at seed 0" in text
    ok = json.loads((out / "a_ok.json").read_text())
    assert ok["ok"] and ok["mode"] == "smoke" and ok["params"]["lr"] == 0.25
    assert ok["metrics"] == {"acc": [0.25], "n": 1} and ok["verdict"]["status"] == "not_reproduced"  # one seed: no test
    assert ok["params"] == {"smoke": True, "seeds": [0, 1, 2], "lr": 0.25}  # every parameter, after overrides
    assert "only the first of seeds" in ok["notes"]
    assert set(ok) >= {"slug", "paper", "mode", "params", "metrics", "verdict", "seconds", "device", "versions", "commit"}
    fail = json.loads((out / "b_fail.json").read_text())
    assert not fail["ok"] and fail["verdict"] is None and "boom" in fail["error"] and "raise RuntimeError" in fail["cell_source"]
    norec = json.loads((out / "c_norecord.json").read_text())
    assert not norec["ok"] and "never called" in norec["error"]
    assert not list(out.glob(".*"))  # no partial records left
    table = runner.report(out)
    assert "| 01 a_ok | smoke | acc 0.25 | not_reproduced |" in table and "FAILED" in table and (out / "report.png").exists()
    assert ok["key_metrics"] == {"acc": 0.25}


def test_full_mode_and_parallel_jobs(book, tmp_path):
    out = tmp_path / "runs"
    recs = runner.run(["a_ok", "b_fail"], smoke=False, jobs=2, out=out, nbs=book)
    by = {r["slug"]: r for r in recs}
    assert by["a_ok"]["ok"] and by["a_ok"]["metrics"]["n"] == 3 and by["a_ok"]["mode"] == "full"
    assert by["a_ok"]["verdict"]["status"] == "partly" and by["a_ok"]["threads"] == 1
    assert not by["b_fail"]["ok"]


def test_refresh_writes_outputs_back_without_papermill(book, tmp_path):
    results = tmp_path / "results"
    runner.refresh(["a_ok"], nbs=book, results=results)
    nb = json.loads((book / "alpha" / "a_ok.ipynb").read_text())
    assert not any("injected-parameters" in c["metadata"].get("tags", []) for c in nb["cells"])
    assert "papermill" not in nb["metadata"] and not any("papermill" in c["metadata"] for c in nb["cells"])
    assert nb["cells"][2]["metadata"]["tags"] == ["parameters"]
    assert "smoke = None" in "".join(nb["cells"][2]["source"])  # the defaults stay literal
    outs = "".join("".join(o.get("text", "")) for o in nb["cells"][4]["outputs"])
    assert "seeds [0, 1, 2]" in outs  # full mode's output is in the source notebook
    rec = json.loads((results / "a_ok.json").read_text())
    assert rec["mode"] == "full" and rec["verdict"]["status"] == "partly" and "executed" not in rec
    assert "partly" in runner.list_notebooks(book, results)



def test_refresh_keeps_a_finished_run_when_another_notebook_breaks_meanwhile(book, tmp_path, monkeypatch):
    "Another notebook's parameters cell turning into a non-literal during the run (someone editing it) costs nothing."
    real_run = runner.run

    def run_while_someone_edits(*args, **kwargs):
        for rec in real_run(*args, **kwargs):
            other = book / "beta" / "c_norecord.ipynb"
            nb = json.loads(other.read_text())
            nb["cells"][2]["source"] = "seeds = list(range(3))"
            other.write_text(json.dumps(nb))
            yield rec

    monkeypatch.setattr(runner, "run", run_while_someone_edits)
    results = tmp_path / "results"
    (rec,) = runner.refresh(["a_ok"], nbs=book, results=results)
    assert rec["ok"] and json.loads((results / "a_ok.json").read_text())["mode"] == "full"
    with pytest.raises(ValueError, match="not a literal"):
        runner.find_notebooks(book)  # the edit did break reading that notebook

def test_strip_papermill_is_idempotent():
    nb = _nb(1, "a", "t", "x = 1")
    once = strip_papermill(json.loads(nbformat.writes(nb)))
    twice = strip_papermill(json.loads(json.dumps(once)))
    assert once == twice


def test_cli_list_report_and_device(book, tmp_path, capsys):
    import torch
    assert main(["--nbs", str(book), "list"]) == 0
    out = capsys.readouterr().out
    assert "| 01 | alpha | a_ok | Paper 1 | not run |" in out and "c_norecord" in out
    assert "3 paper notebook(s)" in out
    assert main(["--nbs", str(book), "list", "--losses"]) == 0
    assert "`lossbook.classification.z_loss.z_loss`" in capsys.readouterr().out
    runs = tmp_path / "runs"
    assert main(["--nbs", str(book), "run", "a_ok", "--smoke", "--out", str(runs)]) == 0
    assert main(["report", str(runs)]) == 0
    assert "| 01 a_ok | smoke | acc 0.1 | not_reproduced |" in capsys.readouterr().out
    if not torch.cuda.is_available():
        assert main(["--nbs", str(book), "run", "a_ok", "--device", "cuda", "--out", str(tmp_path / "x")]) == 2
        assert "CUDA is not available" in capsys.readouterr().err
        assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("name, value, why", [
    ("seeds", "[1,", "not a Python literal"), ("seeds", "5", "non-empty list"), ("seeds", "[]", "non-empty list"),
    ("seeds", "['a']", "non-empty list"), ("lr", "fast", "float"), ("smoke", "True", "--smoke"),
    ("device", "cpu", "--device"),
])
def test_bad_parameter_values_refused_before_running(book, tmp_path, capsys, name, value, why):
    out = tmp_path / "runs"
    assert main(["--nbs", str(book), "run", "a_ok", "--smoke", "-p", name, value, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert why in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_good_parameter_values_accepted(book):
    info = find_notebooks(book)[0]
    runner.check_params(info, {"lr": 1, "seeds": [3, 4]})  # an int where a float is expected is fine


def test_jobs_must_be_positive(book, tmp_path, capsys):
    for jobs in ("0", "-2"):
        assert main(["--nbs", str(book), "run", "a_ok", "--jobs", jobs, "--out", str(tmp_path / "r")]) == 2
        assert "jobs" in capsys.readouterr().err


def test_failed_run_keeps_the_last_good_record(book, tmp_path):
    out = tmp_path / "runs"
    good = {"slug": "b_fail", "ok": True, "mode": "full", "verdict": {"status": "partly"}}
    write_json_atomic(out / "b_fail.json", good)
    rec = runner.run(["b_fail"], smoke=True, out=out, nbs=book)[0]
    assert not rec["ok"]
    assert json.loads((out / "b_fail.json").read_text()) == good
    assert not json.loads((out / "b_fail.failed.json").read_text())["ok"]


def test_two_runs_of_one_notebook_into_one_folder_do_not_mix(book, tmp_path):
    import subprocess
    import sys
    out = tmp_path / "runs"
    cmd = [sys.executable, "-m", "lossbook.runner", "--nbs", str(book), "run", "a_ok", "--smoke", "--out", str(out)]
    outs = [tmp_path / "o1", tmp_path / "o2"]
    procs = [subprocess.Popen(cmd[:-1] + [str(o), "-p", "lr", lr]) for o, lr in zip(outs, ("0.25", "0.5"))]
    procs.append(subprocess.Popen(cmd + ["-p", "lr", "0.75"]))
    procs.append(subprocess.Popen(cmd + ["-p", "lr", "0.125"]))
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0, 0]
    rec = json.loads((out / "a_ok.json").read_text())
    assert rec["ok"] and rec["metrics"]["acc"] == [rec["params"]["lr"]]  # its numbers are its own run's
    assert not list(out.glob(".*"))


def test_cli_errors_are_one_line(book, tmp_path, capsys):
    afile = tmp_path / "a_file"
    afile.write_text("x")
    assert main(["--nbs", str(book), "run", "a_ok", "--smoke", "--out", str(afile)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lossbook: error:") and len(err.strip().splitlines()) == 1
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "not a folder" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "no run records" in capsys.readouterr().err
