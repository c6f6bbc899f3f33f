"""``python -m bench.report``: the HTML report, built from run records only and without torch.

See ``bench/report/build.py`` for the pages, ``sections.py`` for a suite page's content,
``figures.py`` / ``figures_runs.py`` for the plots and ``published.py`` for the paper's tables.
"""
from bench.report.build import build_report  # noqa: F401
