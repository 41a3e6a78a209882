"""Test strength of one module, measured by mutation testing (mutmut 3), outside CI.

mutmut changes the module one small edit at a time (a flipped comparison, a changed constant, a dropped call, a
swapped default) and runs the tests that cover each change: a mutant the tests do not notice "survives". The score
is the share of mutants killed. It runs in a temporary copy of the repository, so the checkout is never touched.

    pip install mutmut
    python benchmarks/mutation_score.py lossbook/classification/z_loss.py tests/test_z_loss.py tests/test_battery.py
    python benchmarks/mutation_score.py lossbook/core.py tests/test_core.py --max-children 2
    python benchmarks/mutation_score.py lossbook/contrastive.py tests/test_contrastive.py tests/test_battery.py -k "contrastive or nt_xent or info_nce or supcon"

It prints the score and the surviving mutants (`mutmut show NAME` in the printed folder shows each diff). Some
survivors are equivalent mutants (a change that cannot alter behaviour, such as a docstring or an unreachable
default); judge them by reading the diff. Expect minutes to hours: every mutant reruns its covering tests.
"""

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUPPORT = ["conftest.py", "ddp_utils.py", "references.py"]  # imported by the test files


def mutmut_config(module: str, tests: list[str], k: str | None = None) -> str:
    "The [tool.mutmut] table: mutate only `module`, run only `tests` (optionally only those matching `-k k`)."
    as_list = lambda xs: "[" + ", ".join(f'"{x}"' for x in xs) + "]"
    tests = tests + (["-k", k] if k else [])
    return ("\n[tool.mutmut]\n"
            'source_paths = ["lossbook"]\n'
            f"only_mutate = {as_list([module])}\n"
            f"pytest_add_cli_args_test_selection = {as_list(tests)}\n"
            'pytest_add_cli_args = ["-q", "-p", "no:cacheprovider", "-p", "no:xdist"]\n'
            'also_copy = ["settings.ini", "nbs"]\n')


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("module", help="the file to mutate, e.g. lossbook/classification/z_loss.py")
    ap.add_argument("tests", nargs="+", help="the test files that should catch its mutants")
    ap.add_argument("--max-children", type=int, default=2, help="mutants tested in parallel")
    ap.add_argument("--keep", action="store_true", help="keep the temporary copy (to inspect mutants)")
    ap.add_argument("-k", default=None, help="pytest -k expression selecting the tests (e.g. 'z_loss or not battery')")
    args = ap.parse_args()
    if not (ROOT / args.module).is_file():
        sys.exit(f"no such module: {args.module}")
    work = Path(tempfile.mkdtemp(prefix="lossbook-mutmut-"))
    for name in ("lossbook", "nbs"):
        shutil.copytree(ROOT / name, work / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (work / "tests").mkdir()
    for f in SUPPORT + [Path(t).name for t in args.tests]:
        shutil.copy(ROOT / "tests" / f, work / "tests" / f)
    for f in ("settings.ini", "setup.py"):
        shutil.copy(ROOT / f, work / f)
    toml = (ROOT / "pyproject.toml").read_text()
    toml = re.sub(r"\n\[tool\.mutmut\][^\[]*", "\n", toml)  # ours replaces any table there
    (work / "pyproject.toml").write_text(toml + mutmut_config(args.module, [f"tests/{Path(t).name}" for t in args.tests], args.k))
    print(f"mutating {args.module} in {work}", flush=True)
    subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", str(args.max_children)], cwd=work)
    res = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=work, capture_output=True,
                         text=True).stdout
    status = dict(re.findall(r"^\s*(\S+): (\w[\w ]*)$", res, flags=re.M))
    killed = sum(s == "killed" for s in status.values())
    survived = [m for m, s in status.items() if s == "survived"]
    tested = killed + len(survived)
    print(f"\n{args.module}: {killed} of {tested} mutants killed ({100 * killed / max(tested, 1):.0f} %); "
          f"{len(status) - tested} not tested (no covering test, timeout or suspicious)")
    for m in survived:
        print("  survived:", m)
    if args.keep or survived:
        print(f"inspect with: cd {work} && mutmut show <name>")
    else:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
