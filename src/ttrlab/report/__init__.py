"""Reports: aggregate a results database over seeds, compare every method with full fine-tuning
at the same setting (paired by seed, exact sign-flip test; `stats` says what is claimed at few
seeds), decide the declared claims (`claims`), draw the paper's figures and the figure of what
each sweep varied, Tables 2, E.1 and 3 with the paper's numbers beside, and write one
self-contained HTML file whose sections (`sections`) appear where the database holds their data.

    from ttrlab.report import build_report
    index = build_report("results.sqlite", "report/")

`theory_vs_measured(theory_runs, training_runs, quantity, measure)` pairs theory runs with the
training runs of the same configuration and seed (`ttrlab.report.matching`) and returns
Spearman's ρ of a computed quantity against the measured robustness.
"""
from ttrlab.report.build import build_report
from ttrlab.report.theory import theory_vs_measured

__all__ = ["build_report", "theory_vs_measured"]
