"""The file_enrichment integration: admission for CloudEvent-style file handlers.

- :class:`FileEnrichmentGate`: classifies each event (``standard`` /
  ``expensive`` by file extension) and admits it under its class's current
  limits; ``@gate`` wraps ``async def handler(event)``.  Not admitted within
  ``max_wait`` (or deferred by the policy): :class:`RetryLater`.
- :func:`dapr_subscription`: the handler answers Dapr's ``SUCCESS`` / ``RETRY``.
- :func:`amqp_consumer`: an aio-pika consume callback (ack / nack with requeue).
- :class:`WorkerPool`: the ``asyncio.Queue(maxsize=N)`` + N workers pattern,
  its parallelism following the class limits live.

See docs/file_enrichment.md.
"""

from integrations.file_enrichment.amqp import AmqpConsumer, AmqpEvent, amqp_consumer
from integrations.file_enrichment.classify import EXPENSIVE, STANDARD, FileClassifier
from integrations.file_enrichment.dapr import dapr_subscription
from integrations.file_enrichment.gate import FileEnrichmentGate, GateAdmission, RetryLater
from integrations.file_enrichment.pool import WorkerPool

__all__ = [
    "EXPENSIVE",
    "STANDARD",
    "AmqpConsumer",
    "AmqpEvent",
    "FileClassifier",
    "FileEnrichmentGate",
    "GateAdmission",
    "RetryLater",
    "WorkerPool",
    "amqp_consumer",
    "dapr_subscription",
]
