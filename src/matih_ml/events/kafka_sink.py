"""Kafka as an event sink, through confluent-kafka's ``Producer``.

Each event goes to one topic (``MATIH_KAFKA_TOPIC``, default ``matih.ml.events``) keyed
``<tenant_id>:<subject>``: one model's events share a partition, so their order holds.
The producer is idempotent with ``acks=all``; a send counts only once the broker has
acknowledged it.
"""

from __future__ import annotations

from typing import Any, Protocol

from matih_ml.config import Settings


class Producer(Protocol):
    """The part of ``confluent_kafka.Producer`` the sink uses."""

    def produce(
        self,
        topic: str,
        value: bytes | None = ...,
        key: bytes | None = ...,
        headers: list[tuple[str, bytes]] | None = ...,
        on_delivery: Any = ...,
    ) -> None: ...

    def flush(self, timeout: float = ...) -> int: ...


class KafkaSendError(Exception):
    """The broker did not acknowledge a message."""


class KafkaSink:
    """Sends events to Kafka and waits for the broker's acknowledgement.

    Args:
        producer: A ``confluent_kafka.Producer`` (or anything with its interface).
        topic: The topic.
        timeout_s: How long to wait for the acknowledgement.
    """

    def __init__(self, producer: Producer, topic: str, timeout_s: float = 10.0) -> None:
        self._producer = producer
        self.topic = topic
        self._timeout_s = timeout_s

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaSink | None:
        """The sink ``MATIH_KAFKA_BOOTSTRAP_SERVERS`` asks for, or None."""
        if not settings.kafka_bootstrap_servers:
            return None
        from confluent_kafka import Producer as ConfluentProducer

        producer = ConfluentProducer(
            {
                "bootstrap.servers": settings.kafka_bootstrap_servers,
                "enable.idempotence": True,
                "acks": "all",
                "client.id": "matih-ml",
            }
        )
        return cls(producer, settings.kafka_topic)

    def send(self, key: str, value: bytes, event_id: str) -> None:
        """Send one event and wait until the broker has it.

        Raises:
            KafkaSendError: If the broker refused it or did not answer in time.
        """
        outcome: dict[str, Any] = {}

        def on_delivery(err: Any, _msg: Any) -> None:
            outcome["error"] = err
            outcome["done"] = True

        self._producer.produce(
            self.topic,
            value=value,
            key=key.encode(),
            headers=[("event-id", event_id.encode())],
            on_delivery=on_delivery,
        )
        self._producer.flush(self._timeout_s)
        if not outcome.get("done"):
            raise KafkaSendError(f"no acknowledgement from Kafka within {self._timeout_s} s")
        if outcome["error"] is not None:
            raise KafkaSendError(str(outcome["error"]))
