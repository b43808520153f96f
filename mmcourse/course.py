"""Where the course lives, defined once: its repository, the version learners install, its links.

A fork changes ``REPOSITORY`` (and ``BRANCH`` if it publishes from another branch) here and
nowhere else: the Colab install cell of every notebook and the course site's launch links are
generated from these constants, and a test fails while a notebook still carries an old one.
"""
from mmcourse import __version__

REPOSITORY = "https://github.com/mmcourse/mmcourse"   # the course's public git repository
BRANCH = "main"                                        # the branch the site's links point at


def release_tag() -> str:
    """The git tag learners install from, e.g. ``"v0.1.0"``: the package pinned to this version."""
    return f"v{__version__}"


def github_path(path: str) -> str:
    """``"owner/name"`` of ``REPOSITORY`` joined with a path inside it, for GitHub-based links."""
    owner_name = REPOSITORY.removeprefix("https://github.com/").rstrip("/")
    return f"{owner_name}/blob/{BRANCH}/{path.lstrip('/')}"


def colab_url(notebook: str) -> str:
    """The "Open in Colab" link of a notebook path such as ``"notebooks/05_fusion.ipynb"``."""
    return f"https://colab.research.google.com/github/{github_path(notebook)}"
