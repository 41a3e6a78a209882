"""A tiny paper notebook for the runner and cluster tests: front matter, a parameters cell, and a body."""
import nbformat


def fake_notebook(card, slug, theme, body, params="smoke = None\nseeds = [0, 1, 2]\nlr = 0.1"):
    "A paper notebook with front matter (card, slug, theme), a parameters cell and `body`."
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "python3", "language": "python"}
    fm = f"---\ntitle: \"Paper {card}\"\ncard: {card}\nslug: {slug}\ntheme: {theme}\n---"
    p = nbformat.v4.new_code_cell(params)
    p.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_raw_cell(fm), nbformat.v4.new_markdown_cell(f"# Paper {card}"), p,
                nbformat.v4.new_code_cell("from lossbook.runner import resolve_smoke, record\nsmoke = resolve_smoke(smoke)"),
                nbformat.v4.new_code_cell(body)]
    return nb
