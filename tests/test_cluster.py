"""Runs and sweeps on Dask (`lossbook run --scheduler`, `lossbook sweep`) on small fake paper notebooks.

The fake notebooks follow tests/test_runner.py: a few trivial cells each. One test runs the real z_loss notebook in
smoke mode on a 2-worker LocalCluster and compares it with a local run.
"""
import csv
import json
import os
import signal
import threading
import time

import nbformat
import pytest
from fake_notebooks import fake_notebook as _nb

pytest.importorskip("distributed")

from distributed import Client, LocalCluster  # noqa: E402

from lossbook import runner  # noqa: E402
from lossbook.runner import first_number, main, point_name  # noqa: E402

OK = ("from lossbook.verdict import Claim\n"
      "c = Claim('c').better('acc', metric='acc', method='m', baseline='b', data='toy', primary=True)\n"
      "n = 1 if smoke else 3\n"
      "vals = [lr * (i + 1) + {k} for i in range(n)]\n"
      "c.observe('acc', [v + 0.1 for v in vals], vals)\n"
      "_ = record({{'acc': vals, 'n': n}}, c, key_metrics={{'acc (%)': f'{{100 * vals[0]:.1f}} ± 0.5', 'n': n}})")

SLEEPER = ("import os, pathlib, time\n"
           "m = pathlib.Path(marker)\n"
           "first = not m.exists()\n"
           "m.write_text(str(os.getpid()))\n"
           "time.sleep(nap if first else 0.1)\n"
           "from lossbook.verdict import Claim\n"
           "c = Claim('c').better('acc', metric='acc', method='m', baseline='b', data='toy', primary=True)\n"
           "c.observe('acc', [1.0], [0.0])\n"
           "_ = record({'first': first}, c)")


@pytest.fixture
def book(tmp_path):
    nbs = tmp_path / "nbs"
    files = {
        ("alpha", "a_ok"): _nb(1, "a_ok", "alpha", OK.format(k=0.0)),
        ("alpha", "b_fail"): _nb(2, "b_fail", "alpha", "x = 1\nraise RuntimeError('boom at seed 0')"),
        ("beta", "d_ok"): _nb(4, "d_ok", "beta", OK.format(k=0.5)),
        ("gamma", "e_sleep"): _nb(5, "e_sleep", "gamma", SLEEPER, params="smoke = None\nmarker = ''\nnap = 60.0"),
    }
    for (theme, slug), nb in files.items():
        (nbs / theme).mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, nbs / theme / f"{slug}.ipynb")
    (nbs / "core").mkdir()
    (tmp_path / "settings.ini").write_text("[DEFAULT]\n")
    return nbs


@pytest.fixture(scope="module")
def client():
    "A 2-worker LocalCluster of single-threaded worker processes, shared by the tests of this module."
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as c:
        yield c


def _no_partials(folder):
    return not [p for p in folder.iterdir() if p.name.startswith(".")]


def test_first_number_and_point_names():
    assert first_number("97.1 ± 0.6") == 97.1 and first_number("12.3 / 45.6") == 12.3
    assert first_number(3) == 3.0 and first_number("-1.5e-3 s") == -1.5e-3 and first_number([1, 2]) == 1.5
    assert first_number("n/a") is None and first_number(None) is None and first_number(True) is None
    assert point_name("z_loss", {"a": 0.1, "seeds": [0, 1]}) == "z_loss__a=0.1__seeds=0_1"
    assert point_name("z", {"mode": "cos ine/../x"}) == "z__mode=cos_ine_.._x"
    long = point_name("z", {"seeds": list(range(200))})
    assert len(long) <= 150 and long != point_name("z", {"seeds": list(range(201))})


def test_cluster_run_gives_the_numbers_of_a_local_run(book, tmp_path, client):
    local, remote = tmp_path / "local", tmp_path / "remote"
    mine = {r["slug"]: r for r in runner.run(["a_ok", "d_ok", "b_fail"], smoke=True, out=local, nbs=book)}
    theirs = {r["slug"]: r for r in runner.run(["a_ok", "d_ok", "b_fail"], smoke=True, out=remote, nbs=book,
                                               scheduler=client)}
    assert set(theirs) == {"a_ok", "d_ok", "b_fail"}
    for slug in ("a_ok", "d_ok"):
        a, b = mine[slug], theirs[slug]
        assert b["ok"] and (b["metrics"], b["verdict"], b["key_metrics"], b["params"]) == \
            (a["metrics"], a["verdict"], a["key_metrics"], a["params"])
        assert b["threads"] == 1 and b["worker"].startswith("tcp://") and b["scheduler"].startswith("tcp://")
        on_disk = json.loads((remote / f"{slug}.json").read_text())
        assert on_disk["metrics"] == a["metrics"] and on_disk["executed"] == str(remote / f"{slug}.ipynb")
        assert nbformat.read(remote / f"{slug}.ipynb", as_version=4).cells[-1].outputs is not None
        assert on_disk["commit"] == a["commit"]  # the client's checkout, not the worker's temporary copy
    assert mine["d_ok"]["metrics"]["acc"] != mine["a_ok"]["metrics"]["acc"]
    fail = json.loads((remote / "b_fail.json").read_text())
    assert not fail["ok"] and "boom at seed 0" in fail["error"] and "raise RuntimeError" in fail["cell_source"]
    assert _no_partials(remote)
    assert "| 04 d_ok | smoke | acc (%) 60.0 ± 0.5; n 1 |" in runner.report(remote)


def test_cli_run_on_an_embedded_local_cluster(book, tmp_path, capsys):
    out = tmp_path / "runs"
    rc = main(["--nbs", str(book), "run", "a_ok", "d_ok", "--smoke", "--scheduler", "local", "--jobs", "2",
               "--out", str(out), "-p", "lr", "0.25"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "local Dask cluster of 2 single-threaded worker(s)" in text and "2 passed, 0 failed" in text
    recs = [json.loads((out / f"{s}.json").read_text()) for s in ("a_ok", "d_ok")]
    assert [r["metrics"]["acc"] for r in recs] == [[0.25], [0.75]]
    assert all(r["scheduler"] == "local" and r["threads"] == 1 for r in recs)


def test_sweep_of_two_points_on_a_cluster(book, tmp_path, client):
    out = tmp_path / "sweep"
    recs = runner.sweep("a_ok", {"lr": [0.25, 0.5], "seeds": [[0, 1]]}, smoke=True, out=out, nbs=book, scheduler=client)
    assert [r["grid"] for r in recs] == [{"lr": 0.25, "seeds": [0, 1]}, {"lr": 0.5, "seeds": [0, 1]}]
    names = sorted(p.name for p in out.glob("*.json"))
    assert names == ["a_ok__lr=0.25__seeds=0_1.json", "a_ok__lr=0.5__seeds=0_1.json"]
    for r in recs:
        on_disk = json.loads((out / f"{r['name']}.json").read_text())
        assert on_disk["grid"] == r["grid"] and on_disk["params"]["lr"] == r["grid"]["lr"]
        assert on_disk["metrics"]["acc"] == [r["grid"]["lr"]] and on_disk["threads"] == 1
    with open(out / "sweep.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    assert [(r["lr"], r["seeds"], r["status"], r["acc (%)"], r["n"]) for r in rows] == \
        [("0.25", "[0, 1]", "not_reproduced", "25.0", "1.0"), ("0.5", "[0, 1]", "not_reproduced", "50.0", "1.0")]
    assert (out / "sweep.png").stat().st_size > 1000 and _no_partials(out)
    table = runner.report(out)
    assert "a_ok lr=0.25 seeds=[0, 1]" in table and "a_ok lr=0.5 seeds=[0, 1]" in table


def test_cli_sweep_here_with_a_chosen_metric(book, tmp_path, capsys):
    out = tmp_path / "sweep"
    rc = main(["--nbs", str(book), "sweep", "a_ok", "--grid", "lr", "[0.2, 0.4]", "--smoke", "--metric", "n",
               "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "sweeping a_ok over 2 point(s)" in text and "sweep.png (n)" in text
    with open(out / "sweep.csv", newline="") as f:
        assert [r["lr"] for r in csv.DictReader(f)] == ["0.2", "0.4"]


@pytest.mark.parametrize("grid, why", [
    (["lr", "[0.1, 'fast']"], "expected a value like the default 0.1"),
    (["smoke", "[True, False]"], "--smoke"),
    (["device", "['cpu']"], "--device"),
    (["learning_rate", "[0.1]"], "unknown parameter(s) learning_rate"),
    (["lr", "0.1"], "non-empty list of values"),
    (["lr", "[]"], "non-empty list of values"),
    (["seeds", "[[0], []]"], "non-empty list"),
])
def test_bad_sweep_points_refused_before_running(book, tmp_path, capsys, grid, why):
    out = tmp_path / "sweep"
    assert main(["--nbs", str(book), "sweep", "a_ok", "--grid", *grid, "--smoke", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert why in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_sweep_refuses_ambiguity(book, tmp_path, capsys):
    out = str(tmp_path / "s")
    assert main(["--nbs", str(book), "sweep", "alpha", "--grid", "lr", "[0.1]", "--out", out]) == 2
    assert "names 2 notebooks" in capsys.readouterr().err
    assert main(["--nbs", str(book), "sweep", "a_ok", "--grid", "lr", "[0.1]", "--grid", "lr", "[0.2]", "--out", out]) == 2
    assert "given twice" in capsys.readouterr().err
    assert main(["--nbs", str(book), "sweep", "a_ok", "--grid", "lr", "[0.1]", "-p", "lr", "0.2", "--out", out]) == 2
    assert "both a grid and a -p parameter" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # --out is required
        main(["--nbs", str(book), "sweep", "a_ok", "--grid", "lr", "[0.1]"])


@pytest.mark.parametrize("allowed_failures", [0, 1])
def test_a_worker_killed_mid_run_leaves_no_corrupt_record(book, tmp_path, allowed_failures):
    import dask
    marker, out, scratch = tmp_path / "started", tmp_path / "runs", tmp_path / "worker_tmp"
    scratch.mkdir()  # the killed worker's temporary folder stays behind: keep it out of /tmp
    with dask.config.set({"distributed.scheduler.allowed-failures": allowed_failures}):
        cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0",
                               env={"TMPDIR": str(scratch)})
    with cluster, Client(cluster) as c:
        def kill():
            t0 = time.time()
            while not marker.exists() and time.time() - t0 < 120:
                time.sleep(0.2)
            kernel = int(marker.read_text())
            for pid in c.run(os.getpid).values():  # the worker process, mid-task
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)
            try:
                os.kill(kernel, signal.SIGKILL)  # its orphaned kernel too
            except ProcessLookupError:
                pass
        killer = threading.Thread(target=kill)
        killer.start()
        t0 = time.time()
        rec = runner.run(["e_sleep"], smoke=True, out=out, nbs=book, scheduler=c, params={"marker": str(marker)})[0]
        killer.join()
    assert time.time() - t0 < 50  # not the 60 s nap: the killed run never finished
    on_disk = json.loads((out / "e_sleep.json").read_text())  # always valid JSON
    assert on_disk == rec and _no_partials(out)
    if allowed_failures == 0:  # no retry: a failure record and a failure line
        assert not rec["ok"] and "KilledWorker" in rec["error"] and rec["executed"] is None
        assert not (out / "e_sleep.ipynb").exists()
    else:  # one retry on the restarted worker, which finds the marker and finishes
        assert rec["ok"] and rec["metrics"] == {"first": False} and (out / "e_sleep.ipynb").exists()


def test_real_notebook_on_a_two_worker_cluster_matches_a_local_run(tmp_path, client):
    nbs = runner.find_nbs_dir(os.path.dirname(__file__))
    info = next(i for i in runner.find_notebooks(nbs) if i.slug == "z_loss")
    local = runner.run_notebook(info, True, tmp_path / "local", "cpu", threads=1)
    remote = runner.run(["z_loss"], smoke=True, device="cpu", out=tmp_path / "remote", nbs=nbs, scheduler=client)[0]
    assert local["ok"] and remote["ok"]
    timing = ("cost_seconds", "speedup_at_max_D")  # wall-clock measurements differ from run to run
    same = lambda r: {k: v for k, v in r["metrics"].items() if k not in timing}  # noqa: E731
    assert same(remote) == same(local) and remote["key_metrics"] == local["key_metrics"]
    measured = lambda v: {k: x for k, x in v.items() if k != "evidence"}  # noqa: E731 (its note quotes a timing)
    assert measured(remote["verdict"]) == measured(local["verdict"]) and remote["threads"] == 1


def test_book_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["book", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "--out" in text and "--sample" in text
