"""What the service tells about itself: figures, metrics and the dashboard's history.

- :mod:`~service.observability.stats`: the typed :class:`~service.observability.stats.Stats`
  of one snapshot (the ``/stats`` body, which the rest reads), and
  :class:`~service.observability.stats.StatsSource`, what gives them (the runtime).
- :mod:`~service.observability.metrics`: Prometheus metrics of one app: the
  :class:`~service.observability.metrics.Observer` the runtime reports to, its
  :class:`~service.observability.metrics.Telemetry` implementation and the request-timing
  middleware.
- :mod:`~service.observability.collector`: the learner's figures as metrics, read from a
  stats snapshot at scrape time, with per-class series bounded.
- :mod:`~service.observability.latency`: end-to-end durations of ``POST /predict`` and
  ``/learn`` per interval of the time series (the same figures as the HTTP histogram).
- :mod:`~service.observability.history`: the dashboard's time series, sampled in memory;
  :mod:`~service.observability.history_file` keeps it in the data dir across restarts.

Nothing here imports the runtime or the writer: they give their figures through
:class:`~service.observability.stats.StatsSource`, so the service has no import cycle here.
"""
