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
