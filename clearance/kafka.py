"""The project's Kafka client configuration, in one place.

Every confluent-kafka producer of the project (replayer, dead letters, benchmarks)
uses `producer_config`, so keys land where the Java client and aiokafka (Faust)
would put them: `murmur2_random` is librdkafka's Java-compatible murmur2
partitioner (random only for null keys). The integration tests check this.
"""

from __future__ import annotations

import logging
import ssl
import time
from typing import Any

from clearance.settings import Settings

KafkaConfig = dict[str, Any]

# A dead letter carries a <= 10 MB input base64-encoded (~13.4 MB) plus headers.
MAX_MESSAGE_BYTES = 32 * 1024 * 1024


def client_config(settings: Settings) -> KafkaConfig:
    """What every confluent-kafka client of the project starts from: the bootstrap servers,
    the security settings (KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*, KAFKA_SSL_*) and
    librdkafka's log routed through Python logging (`librdkafka_logger`)."""
    config: KafkaConfig = {
        "bootstrap.servers": settings.bootstrap,
        "security.protocol": settings.security_protocol.lower(),
        "logger": librdkafka_logger(),
        # A broker that is down or refuses us is reported once by the caller (`probe`), not
        # retried and logged hundreds of times.
        "log.connection.close": False,
    }
    if settings.sasl:
        config["sasl.mechanism"] = settings.sasl_mechanism
        config["sasl.username"] = settings.sasl_username
        config["sasl.password"] = settings.sasl_password
    if settings.tls:
        if settings.ssl_ca_location:
            config["ssl.ca.location"] = settings.ssl_ca_location
        if settings.ssl_certificate_location:
            config["ssl.certificate.location"] = settings.ssl_certificate_location
            config["ssl.key.location"] = settings.ssl_key_location
    return config


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of the aiokafka clients (Faust), from the same settings; None without TLS."""
    if not settings.tls:
        return None
    context = ssl.create_default_context(cafile=settings.ssl_ca_location or None)
    if settings.ssl_certificate_location:
        context.load_cert_chain(settings.ssl_certificate_location, settings.ssl_key_location)
    return context


class _LibrdkafkaLog:
    """librdkafka's log lines into Python logging (logger `clearance.librdkafka`).

    confluent-kafka calls `log(level, fmt, *args)` with syslog-like levels mapped to
    Python's. Connection failures (FAIL, BROKERFAIL, ...) repeat on every retry, and the
    commands report them once themselves: they go to DEBUG, everything else keeps its level.
    """

    _NOISY = ("FAIL", "BROKERFAIL", "ERROR", "CONNECT", "SASLAUTH", "SSL", "AUTHFAIL")

    def __init__(self) -> None:
        self.logger = logging.getLogger("clearance.librdkafka")

    def log(self, level: int, msg: str, *args: Any, **kwargs: Any) -> None:
        facility = str(args[0]) if args else ""
        if facility in self._NOISY:
            level = logging.DEBUG
        self.logger.log(level, msg, *args, **kwargs)


_LOG = _LibrdkafkaLog()


def librdkafka_logger() -> Any:
    return _LOG


def admin_config(settings: Settings) -> KafkaConfig:
    return client_config(settings)


def producer_config(settings: Settings) -> KafkaConfig:
    """confluent-kafka Producer settings: murmur2 keys, idempotent, lz4, short linger."""
    return {
        **client_config(settings),
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


class KafkaUnavailable(RuntimeError):
    """The broker cannot be used: unreachable, refused our credentials or our TLS, or denied us."""


_START_HINT = "start a local one with `clearance broker start` (or set KAFKA_BOOTSTRAP)"


def probe(settings: Settings, timeout: float = 6.0) -> None:
    """Connect once and fetch metadata; KafkaUnavailable with one readable line when that fails.

    Every command calls it first, so a missing broker, a wrong password, an unknown CA or
    a protocol mismatch ends the command within `timeout` s instead of a retry loop.
    """
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient

    errors: list[KafkaError] = []
    heard = _Heard()
    config = {**client_config(settings), "error_cb": errors.append, "logger": heard, "log.connection.close": True}
    admin = AdminClient(config)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if admin.list_topics(timeout=1.0).brokers:
                return
        except KafkaException as exc:
            if isinstance(exc.args[0], KafkaError):
                errors.append(exc.args[0])
        admin.poll(0)
        if any(_fatal(error) for error in errors) or heard.wrong_protocol():
            break
    admin.poll(0)
    raise KafkaUnavailable(explain(settings, errors, heard.lines))


class _Heard(_LibrdkafkaLog):
    """The probe's librdkafka log: forwarded as usual, and kept (a wrong protocol shows only there)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def log(self, level: int, msg: str, *args: Any, **kwargs: Any) -> None:
        self.lines.append(str(args[-1]) if args else msg)
        super().log(level, msg, *args, **kwargs)

    def wrong_protocol(self) -> bool:
        return sum(_closed_in_handshake(line) for line in self.lines) >= 2


def _closed_in_handshake(text: str) -> bool:
    """The broker hung up on our first request: a TLS or SASL listener spoken to in plaintext."""
    return "security.protocol" in text or ("Disconnected" in text and "APIVERSION_QUERY" in text)


def _fatal(error: Any) -> bool:
    """An error that retrying does not cure: credentials, TLS, the wrong protocol."""
    from confluent_kafka import KafkaError

    text = str(error.str())
    return error.code() in (KafkaError._AUTHENTICATION, KafkaError._SSL) or "security.protocol" in text


def explain(settings: Settings, errors: list[Any], lines: list[str] | None = None) -> str:
    """One line for the first error that says most (never a secret: librdkafka's texts hold none)."""
    from confluent_kafka import KafkaError

    where = settings.bootstrap
    texts = [str(e.str()) for e in errors] + list(lines or [])
    codes = [e.code() for e in errors]
    if KafkaError._AUTHENTICATION in codes or any("SASL" in t and "fail" in t for t in texts):
        return (
            f"authentication failed at {where} as user {settings.sasl_username!r} ({settings.sasl_mechanism}): "
            "wrong password or unknown user (KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD[_FILE])"
        )
    tls = next((t for t in texts if "certificate" in t or "SSL handshake" in t), None)
    if tls is not None:
        ca = settings.ssl_ca_location or "the system's CAs"
        return (
            f"TLS handshake with {where} failed; is its certificate signed by {ca} (KAFKA_SSL_CA_LOCATION)? "
            f"({_tail(tls)})"
        )
    if any(_closed_in_handshake(t) for t in texts):
        return (
            f"{where} closed the connection during the handshake: its listener does not speak "
            f"KAFKA_SECURITY_PROTOCOL={settings.security_protocol} (a TLS listener needs SSL or SASL_SSL)"
        )
    transport = [t for t in texts if "Connect to" in t] or texts
    reason = f" ({_tail(transport[0])})" if transport else ""
    return f"no Kafka broker reachable at {where}{reason}; {_START_HINT}"


def _tail(text: str) -> str:
    """librdkafka's reason without its `host:port/id: ` prefix."""
    return text.split(": ", 1)[-1] if "/" in text.split(": ", 1)[0] else text


def denied(topic: str, operation: str, settings: Settings) -> str:
    """The message of an authorization error: which user, which operation, which topic."""
    user = f"user {settings.sasl_username!r}" if settings.sasl else "this client"
    return f"not authorized: {user} may not {operation} topic {topic} (see the ACLs, README 'Security')"
