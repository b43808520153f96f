"""Sphinx configuration of the course site (used as ``sphinx-build -c book``; run ``make book``).

The source folder is the staging folder that ``book/build.py`` writes under ``build/``; this file
only configures. Offline by construction: no notebook is executed (myst-nb's execution is off),
no ipywidgets JavaScript is loaded from a CDN (``book/widgets.py`` draws widgets statically), and
MathJax 2 is copied from the ``jupyter-server-mathjax`` wheel instead of linked from a CDN.
"""

import importlib.util
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # `import mmcourse` and `book` from the checkout

from mmcourse import __version__  # noqa: E402
from mmcourse.course import BRANCH, REPOSITORY  # noqa: E402

project = "mmcourse"
author = "the mmcourse authors"
copyright = "the mmcourse authors, MIT licence"
version = release = __version__
html_title = "Multimodal deep learning with PyTorch"

extensions = ["myst_nb", "sphinx_design", "sphinx_copybutton"]
exclude_patterns = ["_extra", ".doctrees", "**/.ipynb_checkpoints"]

# --- notebooks: render the committed outputs, never execute -------------------------------------
nb_execution_mode = "off"
nb_ipywidgets_js = {}          # widget views are replaced by static HTML at staging time
nb_merge_streams = True        # one block per cell for consecutive prints
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_update_mathjax = False    # MathJax 2 below is configured directly
suppress_warnings = ["myst.header"]  # lesson headings go # -> ### in places; harmless on the site

# --- math: MathJax 2 served from the site itself -------------------------------------------------
mathjax_path = "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full"
mathjax2_config = {"tex2jax": {"inlineMath": [["\\(", "\\)"]], "displayMath": [["\\[", "\\]"]],
                               "processEscapes": False, "ignoreClass": "bd-article", "processClass": "math"},
                   # the wheel ships the STIX-Web fonts only
                   "HTML-CSS": {"availableFonts": ["STIX-Web"], "preferredFont": "STIX-Web",
                                "webFont": "STIX-Web", "imageFont": None,
                                # a display equation wider than the column breaks at an operator
                                # instead of running past the edge (course.css scrolls what cannot break)
                                "linebreaks": {"automatic": True}},
                   "CommonHTML": {"linebreaks": {"automatic": True}},
                   "SVG": {"linebreaks": {"automatic": True}},
                   "menuSettings": {"zoom": "None"}, "showMathMenu": False}

# --- theme ----------------------------------------------------------------------------------------
html_theme = "sphinx_book_theme"
html_theme_options = {
    "repository_url": REPOSITORY,       # defined once, in mmcourse/course.py
    "repository_branch": BRANCH,
    "path_to_docs": "notebooks",
    "use_repository_button": True,
    "use_download_button": False,       # the page's own source is the staged copy: the launch row
                                        # under each title downloads the committed notebook instead
    "use_fullscreen_button": False,
    "home_page_in_toc": True,
    "show_toc_level": 2,
    "navbar_persistent": [],            # the sidebar has the search field; no second one on top
}
html_static_path = [str(HERE / "_static")]
html_css_files = ["course.css"]
html_copy_source = False              # search summaries come from the pages, not from copied JSON
html_show_sourcelink = False
html_last_updated_fmt = None


def _extra_and_mathjax(app):
    """Serve the committed notebooks for download (``notebooks/*.ipynb``) beside the pages."""
    app.config.html_extra_path = [str(Path(app.srcdir) / "_extra")]


def _copy_mathjax(app, exception):
    """Copy MathJax 2 (from the jupyter-server-mathjax wheel) into ``_static/mathjax``."""
    if exception or app.builder.format != "html":
        return
    spec = importlib.util.find_spec("jupyter_server_mathjax")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("jupyter-server-mathjax is missing: pip install -e '.[book]' (make book does)")
    src = Path(list(spec.submodule_search_locations)[0]) / "static"
    dest = Path(app.outdir) / "_static" / "mathjax"
    if not (dest / "MathJax.js").exists():
        shutil.copytree(src, dest, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("localization"))  # English only


def setup(app):
    app.connect("builder-inited", _extra_and_mathjax)
    app.connect("build-finished", _copy_mathjax)
