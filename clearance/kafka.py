"""The project's Kafka client configuration, in one place.

Every confluent-kafka producer of the project (replayer, dead letters, benchmarks)
uses `producer_config`, so keys land where the Java client and aiokafka (Faust)
would put them: `murmur2_random` is librdkafka's Java-compatible murmur2
partitioner (random only for null keys). The integration tests check this.
"""

from __future__ import annotations

from clearance.settings import Settings

KafkaConfig = dict[str, str | int | float | bool]

# A dead letter carries a <= 10 MB input base64-encoded (~13.4 MB) plus headers.
MAX_MESSAGE_BYTES = 32 * 1024 * 1024


def admin_config(settings: Settings) -> KafkaConfig:
    return {"bootstrap.servers": settings.bootstrap}


def producer_config(settings: Settings) -> KafkaConfig:
    """confluent-kafka Producer settings: murmur2 keys, idempotent, lz4, short linger."""
    return {
        "bootstrap.servers": settings.bootstrap,
        "partitioner": "murmur2_random",
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        "message.max.bytes": MAX_MESSAGE_BYTES,
        # Never let a produce (or a metadata request) create a topic: the broker would use
        # its default partition count and break co-partitioning. `clearance topics create`.
        "allow.auto.create.topics": False,
    }
