"""Sphinx configuration of gnnagg's API reference (built from the
docstrings: ``sphinx-build -W -b html docs docs/_build``)."""
import gnnagg

project = "gnnagg"
release = version = gnnagg.__version__
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon",
              "sphinx.ext.mathjax", "sphinx.ext.intersphinx"]
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_typehints = "description"
napoleon_custom_sections = [("Shapes", "params_style")]
nitpicky = False
exclude_patterns = ["_build"]
html_theme = "alabaster"
