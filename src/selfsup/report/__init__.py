"""The HTML report: loads results, draws the figures with plotly and writes the page (``page.py``).

May import: core, data, models, train, pretrain, evaluate, analyse.
"""

from selfsup.analyse.tables import TABLES

# every file the report writes beside metrics.json and plots/ (the report stage's outs)
REPORT_FILES = ("index.html", "curves.csv", "utility.csv", "plotly.min.js", *(f"{t.name}.csv" for t in TABLES))
