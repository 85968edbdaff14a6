"""The HTML report: ``load`` reads what the stages wrote, ``figures`` draws with plotly, ``page`` writes the tables,
metrics.json and the page (from ``templates/report.html``).

May import: core, data, models, train, pretrain, evaluate, analyse.
"""

from selfsup.analyse.tables import TABLES

# every file the report writes beside metrics.json and plots/ (the report stage's outs)
REPORT_FILES = ("index.html", "curves.csv", "utility.csv", "plotly.min.js", *(f"{t.name}.csv" for t in TABLES))
