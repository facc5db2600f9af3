"""The drill machinery (Jepsen's roles, in pytest): ``nemesis`` (faults with their heal),
``catalogue`` (every drill as data), ``trial`` (one drill run under load), ``checkers`` (history ->
verdict) and ``report`` (JSON records, plots, the HTML page, log bundles)."""
