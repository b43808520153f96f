"""The course site: a static HTML book of the committed, executed notebooks (``make book``).

Sphinx + myst-nb + sphinx-book-theme render the notebooks' saved outputs without executing them,
fully offline. Nothing here is hand-written per lesson: the course map, the launch rows, the
solution toggles and the static widget pictures are generated from the notebooks, from
``mmcourse.course`` (links) and from ``mmcourse.check`` (solutions) at build time.

- ``lessons``: what the site reads from a notebook (title, goal, run time, exercises).
- ``widgets``: a widget output's saved state drawn as static HTML, with a "live only when run" line.
- ``build``: stages the sources under ``build/`` and runs Sphinx (``conf.py`` is its config).
"""
