"""The Kafka sink: topic, key ``<tenant>:<model>``, value the catalog's event, and the
broker's acknowledgement awaited. With ``MATIH_TEST_KAFKA_BOOTSTRAP`` set this runs
against that broker; no broker can run on this project's machines, so otherwise it runs
against a producer with confluent-kafka's own interface (``produce``/``flush`` with an
``on_delivery`` callback) that records what it is given and can refuse it."""

from __future__ import annotations

import json
import os
import uuid

import pytest

from matih_ml.events.catalog import EventType
from matih_ml.events.dispatcher import Dispatcher, DispatchPolicy
from matih_ml.events.kafka_sink import KafkaSendError, KafkaSink
from matih_ml.events.outbox import EventLog
from matih_ml.events.secret_box import SecretBox
from matih_ml.events.webhooks import WebhookStore
from matih_ml.store.db import Database

BROKER = os.environ.get("MATIH_TEST_KAFKA_BOOTSTRAP")


class RecordingProducer:
    """confluent_kafka.Producer's interface, recording messages; ``fail`` refuses them."""

    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.fail: str | None = None
        self._callbacks: list = []

    def produce(self, topic, value=None, key=None, headers=None, on_delivery=None) -> None:
        if self.fail is None:
            self.messages.append({"topic": topic, "key": key, "value": value, "headers": headers})
        self._callbacks.append((on_delivery, self.fail))

    def flush(self, timeout: float = -1) -> int:
        for callback, fail in self._callbacks:
            callback(fail, None)
        self._callbacks.clear()
        return 0


@pytest.fixture
def outbox(tmp_path, settings):
    db = Database(f"sqlite:///{tmp_path / 'k.db'}")
    db.upgrade()
    yield EventLog(db, kafka=True), WebhookStore(db, SecretBox(settings)), db
    db.dispose()


def _stage_changed(events: EventLog, db: Database, model: str, version: int) -> str:
    data = {
        "model": model,
        "version": str(version),
        "from_stage": "development",
        "to_stage": "staging",
        "actor": "ci",
    }
    with db.uow() as s:
        return events.emit(s, "acme", EventType.MODEL_STAGE_CHANGED, model, data)


def test_events_go_to_the_topic_keyed_by_tenant_and_model_in_order(outbox) -> None:
    events, hooks, db = outbox
    producer = RecordingProducer()
    sink = KafkaSink(producer, "matih.ml.events")
    ids = [_stage_changed(events, db, f"m{i % 2}", i) for i in range(6)]
    d = Dispatcher(db, hooks, kafka=sink, policy=DispatchPolicy(poll_s=0.01))
    while d.run_once():
        pass
    assert [m["topic"] for m in producer.messages] == ["matih.ml.events"] * 6
    values = [json.loads(m["value"]) for m in producer.messages]
    assert [v["id"] for v in values] == ids
    assert [m["key"] for m in producer.messages] == [f"acme:m{i % 2}".encode() for i in range(6)]
    assert [m["headers"] for m in producer.messages] == [[("event-id", i.encode())] for i in ids]


def test_a_refused_send_is_retried_and_nothing_after_it_overtakes(outbox) -> None:
    events, hooks, db = outbox
    producer = RecordingProducer()
    sink = KafkaSink(producer, "t")
    producer.fail = "KafkaError{code=_MSG_TIMED_OUT}"
    first = _stage_changed(events, db, "churn", 1)
    second = _stage_changed(events, db, "churn", 2)
    d = Dispatcher(db, hooks, kafka=sink, policy=DispatchPolicy(backoff_s=0.001, poll_s=0.01))
    for _ in range(3):
        d.run_once()
    assert producer.messages == []
    producer.fail = None
    for _ in range(50):
        if len(producer.messages) == 2:
            break
        d.run_once()
    assert [json.loads(m["value"])["id"] for m in producer.messages] == [first, second]
    with pytest.raises(KafkaSendError):
        producer.fail = "broker down"
        sink.send("acme:churn", b"{}", "evt_x")


@pytest.mark.skipif(not BROKER, reason="set MATIH_TEST_KAFKA_BOOTSTRAP to a broker to run this")
def test_against_a_real_broker(outbox) -> None:  # pragma: no cover - needs a broker
    from confluent_kafka import Consumer

    from matih_ml.config import Settings

    events, hooks, db = outbox
    topic = f"matih-test-{uuid.uuid4().hex[:8]}"
    sink = KafkaSink.from_settings(
        Settings(MATIH_KAFKA_BOOTSTRAP_SERVERS=BROKER, MATIH_KAFKA_TOPIC=topic)
    )
    event_id = _stage_changed(events, db, "churn", 1)
    Dispatcher(db, hooks, kafka=sink).run_once()
    consumer = Consumer(
        {"bootstrap.servers": BROKER, "group.id": topic, "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    msg = consumer.poll(30)
    consumer.close()
    assert msg is not None and json.loads(msg.value())["id"] == event_id
    assert msg.key() == b"acme:churn"
