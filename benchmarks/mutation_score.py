"""Test strength of one module, measured by mutation testing (mutmut 3), outside CI.

mutmut changes the module one small edit at a time (a flipped comparison, a changed constant, a dropped call, a
swapped default) and runs the tests that cover each change: a mutant the tests do not notice "survives". The score
is the share of mutants killed. It runs in a temporary copy of the repository, so the checkout is never touched.

    pip install mutmut
    python benchmarks/mutation_score.py lossbook/classification/z_loss.py tests/test_z_loss.py tests/test_battery.py
    python benchmarks/mutation_score.py lossbook/core.py tests/test_core.py --max-children 2
    python benchmarks/mutation_score.py lossbook/contrastive.py tests/test_contrastive.py tests/test_battery.py -k "contrastive or nt_xent or info_nce or supcon"

It prints the score and the surviving mutants grouped by function (`mutmut show NAME` in the printed folder shows
each diff). Some survivors are equivalent mutants (a change that cannot alter behaviour, such as a docstring or an
unreachable default); judge them by reading the diff. Expect minutes to hours: every mutant reruns its covering tests.

    # after adding tests: rerun only the survivors of a kept folder, with the test files as they are now
    python benchmarks/mutation_score.py lossbook/ssl/barlow_twins.py tests/test_barlow_twins.py tests/test_battery.py \
        -k "barlow" --resume /tmp/lossbook-mutmut-XXXX
    # report the registry example functions apart (they build test inputs), and the survivors judged equivalent
    ... --exclude-functions "_*example" --equivalent equivalents.txt

`--exclude-functions` takes fnmatch patterns of function names (`Class.method` for methods): their mutants are
counted and listed in a separate line, never silently dropped. `--skip-functions` takes the same patterns and does not
run those functions' unchecked mutants at all (reported as skipped, outside every ratio): for the registry example
functions of a batch-coupled loss, whose every survivor would run the multi-process DDP battery tests. `--equivalent FILE` reads mutant names judged
equivalent (one per line, anything after `#` is the reason): the raw score is printed first, then the score over
the non-equivalent mutants. A `--resume` run keeps every earlier verdict: a killed mutant stays killed (tests were
only added), a survivor is tested again, except those listed as equivalent (they stay survivors in the raw score).
"""

import argparse
import ast
import fnmatch
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUPPORT = ["conftest.py", "ddp_utils.py", "references.py"]  # imported by the test files


# Appended to the copy's tests/conftest.py (never to the repository's): mutmut passes each mutant's covering tests as
# a set, in no particular order, with -x; run the cheapest first (durations from mutmut's own stats) and the
# multi-process DDP tests last, so that a killed mutant costs its cheapest failing test, not a gloo start-up.
ORDER_HOOK = """

# --- added by benchmarks/mutation_score.py in its temporary copy: cheapest tests first, DDP tests last ---
def pytest_collection_modifyitems(items):
    import json as _json
    from pathlib import Path as _Path
    stats = _Path("mutmut-stats.json")
    try:
        durations = _json.loads(stats.read_text()).get("duration_by_test", {}) if stats.is_file() else {}
    except ValueError:
        durations = {}
    def cost(item):
        ddp = "test_ddp" in item.nodeid
        return (ddp, item.nodeid.split("::")[0] if ddp else "", durations.get(item.nodeid, 0.0))
    items.sort(key=cost)
"""


def add_order_hook(work: Path) -> None:
    "Append ORDER_HOOK to the copy's tests/conftest.py once."
    conftest = work / "tests" / "conftest.py"
    text = conftest.read_text()
    if ORDER_HOOK not in text:
        conftest.write_text(text + ORDER_HOOK)


def _strip_docstring(fn: ast.AST) -> str:
    "The function's signature and body without its docstring and name, as comparable text."
    body = fn.body[1:] if (fn.body and isinstance(fn.body[0], ast.Expr) and isinstance(fn.body[0].value, ast.Constant)
                           and isinstance(fn.body[0].value.value, str)) else fn.body
    return ast.dump(ast.Module(body=[ast.Expr(fn.args)] + body, type_ignores=[]))


def docstring_mutants(work: Path, module: str) -> set[str]:
    "Mutants that change only a docstring (no test reads `__doc__`): the mutated file's functions vs their originals."
    tree = ast.parse((work / "mutants" / module).read_text())
    prefix = module[:-3].replace("/", ".") + "."
    fns = {n.name: n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    out = set()
    for name, fn in fns.items():
        base, sep, num = name.rpartition("__mutmut_")
        if sep and num.isdigit() and base + "__mutmut_orig" in fns and \
                _strip_docstring(fn) == _strip_docstring(fns[base + "__mutmut_orig"]):
            out.add(prefix + name)
    return out


def skip_docstring_mutants(work: Path, module: str) -> int:
    "Mark the not yet checked docstring-only mutants 'skipped' (mutmut's exit code 34) so that mutmut does not run them."
    names = docstring_mutants(work, module)
    meta = work / "mutants" / (module + ".meta")
    data = json.loads(meta.read_text())
    codes = data["exit_code_by_key"]
    marked = [m for m in names if m in codes and codes[m] is None]
    for m in marked:
        codes[m] = 34
    meta.write_text(json.dumps(data, indent=4))
    return len(marked)


def skip_function_mutants(work: Path, module: str, patterns: list[str]) -> int:
    "Mark the not yet checked mutants of the functions matching `patterns` 'skipped' (exit code 34): mutmut does not run them."
    meta = work / "mutants" / (module + ".meta")
    data = json.loads(meta.read_text())
    codes = data["exit_code_by_key"]
    marked = [m for m, c in codes.items() if c is None and any(fnmatch.fnmatchcase(function_of(m), p) for p in patterns)]
    for m in marked:
        codes[m] = 34
    meta.write_text(json.dumps(data, indent=4))
    return len(marked)


def skip_listed_mutants(work: Path, module: str, names: dict[str, str]) -> int:
    "Mark the not yet checked mutants among `names` (judged equivalent by reading them) 'skipped': mutmut does not run them."
    meta = work / "mutants" / (module + ".meta")
    data = json.loads(meta.read_text())
    codes = data["exit_code_by_key"]
    marked = [m for m in names if m in codes and codes[m] is None]
    for m in marked:
        codes[m] = 34
    meta.write_text(json.dumps(data, indent=4))
    return len(marked)


def copy_from_git(rev: str, paths: list[str], dest: Path) -> None:
    "Write `paths` (files or folders of the repository) as they are at commit `rev` under `dest` (git archive)."
    tar = subprocess.run(["git", "archive", "--format=tar", rev, "--", *paths], cwd=ROOT, capture_output=True,
                         check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=tar, check=True)


def strip_decorators(path: Path, patterns: list[str]) -> list[str]:
    "Remove the decorators matching `patterns` (fnmatch on their source, e.g. 'numba.njit*') from one file; return them."
    src = path.read_text()
    lines = src.splitlines(keepends=True)
    drop, found = set(), []
    for node in ast.walk(ast.parse(src)):
        for dec in getattr(node, "decorator_list", []):
            text = ast.get_source_segment(src, dec)
            if any(fnmatch.fnmatch(text, pat) for pat in patterns):
                drop.update(range(dec.lineno - 1, dec.end_lineno))  # the '@' sits on the decorator's first line
                found.append(f"{node.name}: @{text}")
    path.write_text("".join(l for i, l in enumerate(lines) if i not in drop))
    return found


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


def function_of(mutant: str) -> str:
    "The mutated function of a mutant name: `pkg.mod.x_f__mutmut_3` -> `f`, `pkg.mod.xǁCǁm__mutmut_3` -> `C.m`."
    last = mutant.rsplit(".", 1)[-1]
    last = re.sub(r"__mutmut_\d+$", "", last)
    if last.startswith("xǁ"):
        cls, meth = last[2:].split("ǁ", 1)
        return f"{cls}.{meth}"
    return last[2:] if last.startswith("x_") else last


def read_equivalents(path: str | None) -> dict[str, str]:
    "{mutant name: reason} from a file of lines `NAME  # reason` (blank lines and lines starting with # ignored)."
    if not path:
        return {}
    out = {}
    for line in Path(path).read_text().splitlines():
        name, _, why = line.partition("#")
        if name.strip():
            out[name.strip()] = why.strip()
    return out


def score(killed: int, tested: int) -> str:
    return f"{killed} of {tested} mutants killed ({100 * killed / max(tested, 1):.1f} %)"


def report(work: Path, module: str, exclude: list[str], equivalents: dict[str, str]) -> list[str]:
    "Print the scores (raw, without the excluded functions, without the equivalents) and the survivors; return them."
    res = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=work, capture_output=True,
                         text=True).stdout
    status = dict(re.findall(r"^\s*(\S+): (\w[\w ]*)$", res, flags=re.M))
    docstrings = docstring_mutants(work, module)
    # a docstring-only mutant marked 'skipped' (--skip-docstrings) is a survivor that was not run: no test reads __doc__;
    # so is a mutant listed as equivalent and marked skipped by --resume before it was run (e.g. a device argument)
    status = {m: ("survived" if s == "skipped" and (m in docstrings or m in equivalents) else s) for m, s in status.items()}
    tested = {m: s for m, s in status.items() if s in ("killed", "survived")}
    survived = [m for m, s in tested.items() if s == "survived"]
    n_killed = len(tested) - len(survived)
    print(f"\n{module}: {score(n_killed, len(tested))}; "
          f"{len(status) - len(tested)} not tested (no covering test, timeout, suspicious or not checked)")
    n_doc = sum(m in docstrings for m in survived)
    print(f"  of the survivors, {n_doc} change only a docstring"
          + (" (those marked skipped were counted as survivors without being run)" if n_doc else ""))
    # a docstring-only mutant is equivalent by construction: judged so without a file
    equivalents = {**{m: "docstring only" for m in survived if m in docstrings}, **equivalents}
    n_skipped = sum(s == "skipped" for s in status.values())
    if n_skipped:
        print(f"  {n_skipped} mutants skipped (--skip-functions) were not run: outside every ratio")
    others = {s for s in status.values()} - {"killed", "survived"}
    for s in sorted(others):
        print(f"  {s}: {sum(v == s for v in status.values())}")
    excluded = lambda m: any(fnmatch.fnmatchcase(function_of(m), p) for p in exclude)
    if exclude:
        ex = {m: s for m, s in tested.items() if excluded(m)}
        ex_killed = sum(s == "killed" for s in ex.values())
        print(f"  excluded functions {exclude}: {score(ex_killed, len(ex))}, reported apart")
        print(f"  without them: {score(n_killed - ex_killed, len(tested) - len(ex))}")
    if equivalents:
        unknown = [m for m in equivalents if m not in status]
        if unknown:
            print(f"  {len(unknown)} names in the equivalents file are not mutants of this run: {unknown[:5]} ...")
        eq = [m for m in survived if m in equivalents]
        stale = [m for m in equivalents if tested.get(m) == "killed"]
        if stale:
            print(f"  {len(stale)} mutants listed as equivalent were killed (not equivalent): {stale}")
        print(f"  {len(eq)} survivors judged equivalent; non-equivalent: "
              f"{score(n_killed, len(tested) - len(eq))}")
        if exclude:
            keep = [m for m in tested if not excluded(m) and m not in eq]
            print(f"  non-equivalent, without the excluded functions: "
                  f"{score(sum(tested[m] == 'killed' for m in keep), len(keep))}")
    by_function = defaultdict(list)
    for m in survived:
        by_function[function_of(m)].append(m)
    print(f"\nsurvivors by function ({len(survived)}; = equivalent, x excluded function):")
    for fn, ms in sorted(by_function.items(), key=lambda kv: -len(kv[1])):
        print(f"  {fn} ({len(ms)})")
        for m in ms:
            tag = "=" if m in equivalents else ("x" if excluded(m) else " ")
            why = f"  # {equivalents[m]}" if m in equivalents and equivalents[m] else ""
            print(f"   {tag} {m}{why}")
    return survived


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("module", help="the file to mutate, e.g. lossbook/classification/z_loss.py")
    ap.add_argument("tests", nargs="+", help="the test files that should catch its mutants")
    ap.add_argument("--max-children", type=int, default=2, help="mutants tested in parallel")
    ap.add_argument("--keep", action="store_true", help="keep the temporary copy (to inspect mutants)")
    ap.add_argument("-k", default=None, help="pytest -k expression selecting the tests (e.g. 'z_loss or not battery')")
    ap.add_argument("--resume", metavar="DIR", default=None,
                    help="a folder kept by an earlier run (same module, tests and -k): copy the test files again and "
                         "rerun only its survivors")
    ap.add_argument("--exclude-functions", nargs="*", default=[], metavar="PATTERN",
                    help="fnmatch patterns of functions (e.g. '_*example') whose mutants are scored apart")
    ap.add_argument("--equivalent", metavar="FILE", default=None,
                    help="mutant names judged equivalent, one per line ('NAME  # reason'): also print the "
                         "non-equivalent score; with --resume, listed mutants not checked yet are not run (counted "
                         "as survivors judged equivalent, like docstring-only mutants)")
    ap.add_argument("--report-only", action="store_true", help="with --resume: run nothing, print the scores")
    ap.add_argument("--continue", dest="cont", metavar="DIR", default=None,
                    help="a kept folder whose run was stopped: add the test order hook and check the remaining mutants "
                         "with the tests already there (no copy)")
    ap.add_argument("--skip-functions", nargs="*", default=[], metavar="PATTERN",
                    help="fnmatch patterns of functions (e.g. '_*example') whose not yet checked mutants are not run: "
                         "marked skipped, reported as not tested, outside every ratio (saves the covering tests of "
                         "their survivors, e.g. multi-process DDP tests)")
    ap.add_argument("--git-rev", metavar="REV", default=None,
                    help="take the library (lossbook/, nbs/, settings.ini, setup.py) and the tests' support files "
                         "(conftest, ddp_utils, references) as committed at REV instead of the working tree, whose "
                         "other modules may be half-written by others; the named test files still come from the "
                         "working tree")
    ap.add_argument("--strip-decorators", nargs="*", default=[], metavar="PATTERN",
                    help="fnmatch patterns of decorators (their source, e.g. 'numba.njit*' 'lru_cache*') removed from the "
                         "module's copy before the mutants are made: mutmut 3 does not mutate decorated functions. Only for "
                         "decorators that do not change what the tests see (numba under NUMBA_DISABLE_JIT=1, a cache)")
    ap.add_argument("--skip-docstrings", action="store_true",
                    help="do not run the mutants that change only a docstring (no test reads __doc__); they are "
                         "counted as survivors and reported as such")
    args = ap.parse_args()
    if not (ROOT / args.module).is_file():
        sys.exit(f"no such module: {args.module}")
    test_names = [Path(t).name for t in args.tests]
    equivalents = read_equivalents(args.equivalent)
    mutmut = [sys.executable, "-m", "mutmut", "run", "--max-children", str(args.max_children)]

    def skip_docstrings(work: Path) -> None:
        if args.skip_docstrings:
            print(f"{skip_docstring_mutants(work, args.module)} docstring-only mutants marked skipped (not run)",
                  flush=True)
        if args.skip_functions:
            print(f"{skip_function_mutants(work, args.module, args.skip_functions)} mutants of the functions "
                  f"{args.skip_functions} marked skipped (not run, outside every ratio)", flush=True)

    if args.cont:
        work = Path(args.cont)
        add_order_hook(work)
        skip_docstrings(work)
        print(f"continuing {args.module} in {work}", flush=True)
        subprocess.run(mutmut, cwd=work)
    elif args.resume:
        work = Path(args.resume)
        if not (work / "mutants").is_dir():
            sys.exit(f"not a kept mutmut folder: {work}")
        if args.report_only:
            report(work, args.module, args.exclude_functions, equivalents)
            return
        for f in test_names if args.git_rev else SUPPORT + test_names:  # the tests as they are now (mutmut copies
            shutil.copy(ROOT / "tests" / f, work / "tests" / f)            # tests/ into mutants/ itself)
        if args.git_rev:
            copy_from_git(args.git_rev, [f"tests/{f}" for f in SUPPORT], work)
        add_order_hook(work)
        skip_docstrings(work)  # before listing the unchecked mutants: those marked skipped are not run
        n_eq = skip_listed_mutants(work, args.module, equivalents)
        if n_eq:
            print(f"{n_eq} mutants not checked yet but listed as equivalent marked skipped (not run; counted as "
                  f"survivors judged equivalent, like docstring-only mutants)", flush=True)
        res = subprocess.run([sys.executable, "-m", "mutmut", "results"], cwd=work, capture_output=True,
                             text=True).stdout
        names = re.findall(r"^\s*(\S+): survived$", res, flags=re.M)
        skipped = [m for m in names if m in equivalents]  # judged equivalent: no added test can kill them
        names = [m for m in names if m not in equivalents]
        unchecked = re.findall(r"^\s*(\S+): not checked$", res, flags=re.M)
        print(f"rerunning {len(names)} survivors of {args.module} in {work} "
              f"({len(skipped)} survivors judged equivalent are not rerun and stay survivors), "
              f"and checking {len(unchecked)} mutants not checked before", flush=True)
        if names or unchecked:
            subprocess.run(mutmut + names + unchecked, cwd=work)
    else:
        work = Path(tempfile.mkdtemp(prefix="lossbook-mutmut-"))
        if args.git_rev:
            copy_from_git(args.git_rev, ["lossbook", "nbs", "settings.ini", "setup.py"]
                          + [f"tests/{f}" for f in SUPPORT], work)
        else:
            for name in ("lossbook", "nbs"):
                shutil.copytree(ROOT / name, work / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            (work / "tests").mkdir()
            for f in ("settings.ini", "setup.py"):
                shutil.copy(ROOT / f, work / f)
        for f in test_names if args.git_rev else SUPPORT + test_names:
            shutil.copy(ROOT / "tests" / f, work / "tests" / f)
        if args.strip_decorators:
            for d in strip_decorators(work / args.module, args.strip_decorators):
                print(f"stripped {d}", flush=True)
        add_order_hook(work)
        toml = (ROOT / "pyproject.toml").read_text()
        toml = re.sub(r"\n\[tool\.mutmut\][^\[]*", "\n", toml)  # ours replaces any table there
        (work / "pyproject.toml").write_text(toml + mutmut_config(args.module, [f"tests/{t}" for t in test_names], args.k))
        print(f"mutating {args.module} in {work}", flush=True)
        if args.skip_docstrings:  # generate the mutants and the test statistics only (no mutant matches this name)
            subprocess.run(mutmut + ["no.such.mutant__mutmut_0"], cwd=work, capture_output=True)
            skip_docstrings(work)
        subprocess.run(mutmut, cwd=work)
    survived = report(work, args.module, args.exclude_functions, equivalents)
    if args.keep or args.resume or args.cont or survived:
        print(f"inspect with: cd {work} && mutmut show <name>")
    else:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
