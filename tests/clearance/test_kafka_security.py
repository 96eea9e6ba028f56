"""One security configuration for every Kafka client, from KAFKA_* variables; secrets never print."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from agents.app import broker_credentials
from clearance.kafka import client_config, explain, producer_config, ssl_context
from clearance.settings import Settings, env_name

SECRET = "s3cr3t-Pa55word"  # noqa: S105 - a test value


def _secure(tmp_path: Path, **extra: str) -> Settings:
    ca = tmp_path / "ca.pem"
    ca.write_text("not parsed here", encoding="utf-8")
    env = {
        "KAFKA_BOOTSTRAP": "127.0.0.1:19093",
        "KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
        "KAFKA_SASL_MECHANISM": "scram-sha-512",
        "KAFKA_SASL_USERNAME": "worker",
        "KAFKA_SASL_PASSWORD": SECRET,
        "KAFKA_SSL_CA_LOCATION": str(ca),
    }
    return Settings.from_env(env | extra)


def test_plaintext_by_default() -> None:
    settings = Settings.from_env({})
    assert settings.security_protocol == "PLAINTEXT" and not settings.sasl and not settings.tls
    config = client_config(settings)
    assert config["security.protocol"] == "plaintext"
    assert not any(key.startswith(("sasl.", "ssl.")) for key in config)
    assert ssl_context(settings) is None and broker_credentials(settings) is None


def test_the_security_variables_are_kafka_ones() -> None:
    assert env_name("bootstrap") == "KAFKA_BOOTSTRAP"
    assert env_name("sasl_password_file") == "KAFKA_SASL_PASSWORD_FILE"
    assert env_name("ssl_ca_location") == "KAFKA_SSL_CA_LOCATION"
    assert env_name("web_bind") == "CLEARANCE_WEB_BIND"
    assert Settings().web_bind == "127.0.0.1"


def test_every_client_gets_the_same_security_keys(tmp_path: Path) -> None:
    settings = _secure(tmp_path)
    assert (settings.security_protocol, settings.sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-512")
    for config in (client_config(settings), producer_config(settings)):
        assert config["security.protocol"] == "sasl_ssl"
        assert config["sasl.mechanism"] == "SCRAM-SHA-512"
        assert (config["sasl.username"], config["sasl.password"]) == ("worker", SECRET)
        assert config["ssl.ca.location"] == settings.ssl_ca_location


def test_the_password_can_come_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "worker.password"
    secret.write_text(SECRET + "\n", encoding="utf-8")
    settings = _secure(tmp_path, KAFKA_SASL_PASSWORD="", KAFKA_SASL_PASSWORD_FILE=str(secret))
    assert settings.sasl_password == SECRET
    with pytest.raises(ValueError, match="KAFKA_SASL_PASSWORD_FILE") as raised:
        _secure(tmp_path, KAFKA_SASL_PASSWORD="", KAFKA_SASL_PASSWORD_FILE=str(tmp_path / "absent"))
    assert SECRET not in str(raised.value)


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL"),
        ({"KAFKA_SASL_MECHANISM": "GSSAPI"}, "KAFKA_SASL_MECHANISM"),
        ({"KAFKA_SASL_PASSWORD": ""}, "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"),
        ({"KAFKA_SSL_CA_LOCATION": "/nonexistent/ca.pem"}, "KAFKA_SSL_CA_LOCATION"),
        ({"KAFKA_SSL_CERTIFICATE_LOCATION": "/etc/hostname"}, "go together"),
    ],
)
def test_bad_security_settings_are_refused_with_the_variable_named(
    tmp_path: Path, extra: dict[str, str], match: str
) -> None:
    with pytest.raises(ValueError, match=match) as raised:
        _secure(tmp_path, **extra)
    assert SECRET not in str(raised.value)


def test_secrets_never_print(tmp_path: Path) -> None:
    settings = _secure(tmp_path, KAFKA_SSL_CA_LOCATION="")  # the system's CAs
    credentials = broker_credentials(settings)
    assert credentials is not None and credentials.mechanism.value == "SCRAM-SHA-512"
    assert credentials.ssl_context is not None and credentials.protocol.value == "SASL_SSL"
    for text in (repr(settings), str(settings), repr(credentials)):
        assert SECRET not in text


def test_tls_context_for_aiokafka(tmp_path: Path) -> None:
    settings = Settings.from_env({"KAFKA_SECURITY_PROTOCOL": "SSL"})
    context = ssl_context(settings)
    assert context is not None and context.check_hostname
    assert type(broker_credentials(settings)).__name__ == "SSLCredentials"


class _Error:
    def __init__(self, code: int, text: str) -> None:
        self._code, self._text = code, text

    def code(self) -> int:
        return self._code

    def str(self) -> str:
        return self._text


def test_failures_are_explained_in_one_line(tmp_path: Path) -> None:
    from confluent_kafka import KafkaError

    settings = _secure(tmp_path)
    auth = explain(settings, [_Error(KafkaError._AUTHENTICATION, "SASL authentication error: failed")])
    assert "authentication failed" in auth and "'worker'" in auth and SECRET not in auth
    tls = explain(settings, [_Error(KafkaError._SSL, "h:1/b: SSL handshake failed: certificate verify failed")])
    assert tls.startswith("TLS handshake with 127.0.0.1:19093 failed")
    down = explain(Settings(), [_Error(KafkaError._TRANSPORT, "h:1/b: Connect to ipv4#h:1 failed: refused")])
    assert "no Kafka broker reachable at 127.0.0.1:9092" in down and "clearance broker start" in down
    closed = explain(Settings(), [], ["h:1/b: Disconnected: closed (after 2ms in state APIVERSION_QUERY)"])
    assert "does not speak KAFKA_SECURITY_PROTOCOL=PLAINTEXT" in closed
    assert all("\n" not in text for text in (auth, tls, down, closed))


def test_librdkafka_logs_through_python_logging(caplog: pytest.LogCaptureFixture) -> None:
    logger = client_config(Settings())["logger"]
    with caplog.at_level(logging.DEBUG, logger="clearance.librdkafka"):
        logger.log(logging.ERROR, "%s [%s] %s", "FAIL", "rdkafka#producer-1", "Connect failed")
        logger.log(logging.WARNING, "%s [%s] %s", "CONFWARN", "rdkafka#producer-1", "odd setting")
    levels = {r.getMessage().split()[0]: r.levelno for r in caplog.records}
    assert levels == {"FAIL": logging.DEBUG, "CONFWARN": logging.WARNING}
