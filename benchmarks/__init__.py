"""gorun's benchmark suite, run from the repository root.

* ``python -m benchmarks [--quick] [--only NAME] [--json PATH]``: run the cases
  (:mod:`benchmarks.cli`);
* ``python -m benchmarks.chart RESULTS.json``: draw PNG charts into ``docs/img``;
* ``python -m benchmarks.report RESULTS.json``: write ``docs/benchmarks.md``;
* ``python -m benchmarks.profile CASE PEER``: run one peer under ``cProfile``.

One module per family of cases (``cases_*.py``); :mod:`benchmarks._harness` runs them.
"""
