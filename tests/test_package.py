"The package's generated files: nbdev writes every module's summary into `lossbook/__init__.py` as a plain docstring."
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_init_docstring_has_no_escape_sequences():
    # nbdev-export copies each notebook's summary (its first `>` quote) into a non-raw docstring: a LaTeX backslash
    # there (\lambda, \tau, \sum) becomes an invalid escape (a SyntaxWarning, an error in future Pythons) or a tab.
    src = (ROOT / "lossbook" / "__init__.py").read_text(encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compile(src, "lossbook/__init__.py", "exec")
    assert "\\" not in src, "a backslash in a notebook's summary quote: write it without LaTeX (e.g. λ, τ, Σ)"


def _dev_unused(nb: dict) -> bool:
    "True when a notebook resolves `dev = get_device(device)` but passes `dev` nowhere else (`.to(dev)`, `device=dev`, ...)."
    import re

    code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    defined = [i for i, src in enumerate(code) if re.search(r"^dev\s*=\s*get_device\(device\)", src, re.M)]
    uses = re.compile(r"\.to\(\s*dev\b|device\s*=\s*dev\b|\bdev\s*[,)]")
    used = any(uses.search(line) for i, src in enumerate(code) if i not in defined
               for line in src.splitlines() if not line.lstrip().startswith(("#", "print(")))
    return bool(defined) and not used


def test_paper_notebooks_use_their_device():
    # issue #11: a notebook that resolves `dev` and never moves a model or a tensor there runs all on the CPU
    import json

    paper = [p for p in sorted((ROOT / "nbs").glob("*/*.ipynb")) if p.parent.name != "core"]
    assert paper, "no paper notebook found under nbs/"
    unused = [p.stem for p in paper if _dev_unused(json.loads(p.read_text(encoding="utf-8")))]
    assert not unused, f"these notebooks resolve `dev = get_device(device)` but never use it: {unused}"
