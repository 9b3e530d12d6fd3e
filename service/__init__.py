"""The edgecl daemon: HTTP and MQTT around one continual learner.

How one ``POST /learn`` travels (an MQTT ``learn`` message takes the same path from step 2)::

    transport        routes/learn.py          mqtt_handlers.py
      decode           routes/__init__.read_samples   mqtt_wire.decode/parse
                       (bodies.py: bounded JSON/msgpack/multipart → schemas.LearnRequest)
      │
      ▼
    use case         usecases.UseCases.learn
      embed            runtime.embed_for_learning → inputs.Embedder (decoding.py, budget.py);
                       backbone lanes, predictions first (embed_batching.EmbedBatcher)
      check + queue    runtime.submit_learn → Learner.check_batch → batching.MicroBatchQueue
      │
      ▼
    writer thread    runtime._run → writer.Writer.learn_batch
      dedup, WAL       sample_ids.RecentIds, records.learn_record → wal.WriteAheadLog
      learn            Learner.learn_batch (probe, strategy, store), while the WAL fsyncs;
                       Learner.open_head publishes
      durable          wal fsync (wal.py, wal_segments.py), then the future resolves
      checkpoint       checkpointing.Checkpointer: when the WAL since the last one holds as many
                       bytes as it (checkpoints.Checkpoints writes it; restore.py reads it back)
      │
      ▼
    reply            usecases → schemas.LearnReply → transport encodes (JSON, msgpack, MQTT)

A failure anywhere is an exception from :mod:`service.errors`, whose one table gives the HTTP
status, whether an MQTT message is acknowledged, and the metrics reason. ``/predict`` is
``UseCases.predict``: embed, then score the published head without waiting for the writer.
``/retrain`` is ``UseCases.retrain``: a background job (retrain.py) whose head the writer
swaps in (``Learner.swap_head``).

Who owns what: ``bootstrap`` turns settings (``settings``, ``settings_groups``) into a
runtime, ``app`` wires the HTTP routes and the MQTT bridge to the use cases; the runtime
(``runtime.LearnerRuntime``) is the only door to the writer, the WAL, checkpoints, the
probe and retrain jobs; transports never import those. What the
daemon tells about itself (``/stats``, ``/metrics``, the dashboard, the MQTT ``model`` topic)
is read from ``runtime.stats()``, typed ``observability.stats.Stats`` (built in
``runtime_stats``); the ``observability`` package imports nothing of the runtime.

A new transport decodes into the request models of ``schemas``, calls ``UseCases`` and maps
failures with ``errors.outcome``: one module, as ``mqtt_handlers`` shows (its bridge,
``mqtt.py``, only keeps the connection). ``make lint`` checks these rules (import-linter).
"""
