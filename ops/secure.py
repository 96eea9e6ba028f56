"""`clearance broker start --secure`: TLS material, SCRAM users and ACLs of the local broker.

Generated once per broker directory and kept across restarts: a CA and a broker
certificate for 127.0.0.1/localhost (PEM, `cryptography`), and one random password per
user in credentials.json (mode 0600; `clearance broker status` names it), with a
password file per user for KAFKA_SASL_PASSWORD_FILE. The users and what the ACLs let
them do (README, "Security"):

  admin     super user (creates topics, sets ACLs)
  worker    reads the inputs and ticks; writes the declarations, dead letters and ticks;
            everything on its internal topics `<app_id>-*` and its consumer group
  replayer  writes the inputs and ticks, nothing else
  monitor   reads the declarations, describes the worker's group and the input topics
            (offsets for the lag; no data)

Topic and group ACLs are PREFIXED on the configured names, so suffixed copies of the
topics (tests, load runs) fall under the same rules; nobody but admin and worker may
read the dead letters.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import secrets
from pathlib import Path
from typing import Any

from clearance.settings import Settings
from ops.files import BrokerFiles

USERS = ("admin", "worker", "replayer", "monitor")
MECHANISM = "SCRAM-SHA-512"


def _private(path: Path, data: bytes) -> None:
    """Write `data` to a new file of mode 0600 (never readable by others, even for a moment)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def ensure_tls(files: BrokerFiles, hosts: tuple[str, ...] = ("localhost",)) -> None:
    """A CA and a broker certificate (127.0.0.1 and `hosts`) signed by it, unless both exist."""
    if files.ca.exists() and files.keystore.exists():
        return
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"clearance local CA ({files.root.name})")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )  # keyCertSign, cRLSign
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(
            x509.SubjectAlternativeName(
                [*(x509.DNSName(host) for host in hosts), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    pkcs8 = serialization.PrivateFormat.PKCS8
    none = serialization.NoEncryption()
    _private(files.ca_key, ca_key.private_bytes(pem, pkcs8, none))
    _private(files.keystore, key.private_bytes(pem, pkcs8, none) + cert.public_bytes(pem) + ca.public_bytes(pem))
    files.ca.write_bytes(ca.public_bytes(pem))


def password_file(files: BrokerFiles, user: str) -> Path:
    return files.root / "secrets" / f"{user}.password"


def ensure_credentials(files: BrokerFiles) -> dict[str, str]:
    """Each user's password: read from credentials.json, or generated and written (0600)."""
    if files.credentials.exists():
        users: dict[str, str] = json.loads(files.credentials.read_text(encoding="utf-8"))["users"]
        if set(users) == set(USERS):
            return users
    users = {user: secrets.token_urlsafe(24) for user in USERS}
    document: dict[str, Any] = {
        "bootstrap": files.bootstrap,
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": MECHANISM,
        "ssl_ca_location": str(files.ca),
        "users": users,
        "password_files": {user: str(password_file(files, user)) for user in USERS},
    }
    for user, password in users.items():
        _private(password_file(files, user), password.encode())
    _private(files.credentials, json.dumps(document, indent=2).encode())
    return users


def scram_arguments(users: dict[str, str]) -> list[str]:
    """kafka-storage format arguments that create the SCRAM users with the storage."""
    out: list[str] = []
    for user, password in users.items():
        out += ["--add-scram", f"{MECHANISM}=[name={user},password={password}]"]
    return out


def client_settings(files: BrokerFiles, user: str, users: dict[str, str], base: Settings | None = None) -> Settings:
    """Settings that connect to the secure broker as `user`."""
    return (base or Settings()).with_overrides(
        bootstrap=files.bootstrap,
        security_protocol="SASL_SSL",
        sasl_mechanism=MECHANISM,
        sasl_username=user,
        sasl_password=users[user],
        ssl_ca_location=str(files.ca),
    )


def acl_bindings(settings: Settings) -> list[Any]:
    """The ACLs of worker, replayer and monitor for the topics and app id of `settings`."""
    from confluent_kafka.admin import (  # type: ignore[attr-defined]  # exported, untyped
        AclBinding,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    topic, group, txn = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.TRANSACTIONAL_ID
    op = AclOperation
    rules: list[tuple[str, Any, str, Any]] = []
    for name in (*settings.input_topics, settings.topic_ticks):
        rules.append(("worker", topic, name, op.READ))
        rules.append(("replayer", topic, name, op.WRITE))
    for name in settings.input_topics:
        rules.append(("monitor", topic, name, op.DESCRIBE))  # the worker group's lag: offsets, no data
    rules.append(("worker", topic, settings.topic_ticks, op.WRITE))  # the worker's own ticks
    for name in (settings.topic_matched, settings.topic_flagged):
        rules.append(("worker", topic, name, op.WRITE))
        rules.append(("monitor", topic, name, op.READ))
    rules.append(("worker", topic, settings.topic_deadletter, op.WRITE))
    rules.append(("worker", topic, f"{settings.app_id}-", op.ALL))  # candidates and changelogs
    rules.append(("worker", group, settings.app_id, op.READ))
    rules.append(("worker", txn, settings.app_id, op.ALL))  # exactly_once's transactional producers
    rules.append(("monitor", group, settings.app_id, op.DESCRIBE))
    return [
        AclBinding(kind, name, ResourcePatternType.PREFIXED, f"User:{user}", "*", operation, AclPermissionType.ALLOW)
        for user, kind, name, operation in rules
    ]


def apply_acls(files: BrokerFiles, users: dict[str, str], settings: Settings) -> None:
    """Create the ACLs as admin (idempotent: an existing binding is not an error)."""
    from confluent_kafka.admin import AdminClient

    from clearance.kafka import client_config

    admin = AdminClient(client_config(client_settings(files, "admin", users)))
    for future in admin.create_acls(acl_bindings(settings), request_timeout=30).values():
        future.result()


# ---------------------------------------------------------------- docker-compose.secure.yml

_COMPOSE_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@kafka:9093
listeners=SASL_SSL://:9092,CONTROLLER://:9093,EXTERNAL://:29092
advertised.listeners=SASL_SSL://kafka:9092,EXTERNAL://localhost:29092
controller.listener.names=CONTROLLER
inter.broker.listener.name=SASL_SSL
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT,EXTERNAL:SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=\\
org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="{admin}";
listener.name.external.scram-sha-512.sasl.jaas.config=\\
org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="{admin}";
ssl.keystore.type=PEM
ssl.keystore.location=/secrets/tls/broker.pem
ssl.truststore.type=PEM
ssl.truststore.location=/secrets/tls/ca.pem
ssl.client.auth=none
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:admin;User:ANONYMOUS
allow.everyone.if.no.acl.found=false
log.dirs=/var/lib/kafka/data
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
message.max.bytes=33554432
replica.fetch.max.bytes=33554432
"""
_COMPOSE_CLIENT = """\
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="{admin}";
ssl.truststore.type=PEM
ssl.truststore.location=/secrets/tls/ca.pem
"""
_KAFKA_UID = 1000  # appuser in the apache/kafka image
_CLIENT_UID = 65534  # nobody, the clearance image's user


def prepare_compose(root: Path, hosts: tuple[str, ...]) -> None:
    """The secrets volume of docker-compose.secure.yml (run as root by its `secrets` service).

    tls/ (CA and broker certificate for `hosts`), secrets/<user>.password for the clients,
    kafka/server.properties and kafka/scram (the users for kafka-storage format) for the
    broker's user only. Kept when present, so a restart keeps the passwords.
    """
    files = BrokerFiles(root=root, port=9092)
    ensure_tls(files, hosts)
    users = ensure_credentials(files)
    kafka = root / "kafka"
    if not (kafka / "server.properties").exists():
        _private(kafka / "server.properties", _COMPOSE_PROPERTIES.format(admin=users["admin"]).encode())
        _private(kafka / "client.properties", _COMPOSE_CLIENT.format(admin=users["admin"]).encode())
        _private(kafka / "scram", "\n".join(scram_arguments(users)[1::2]).encode() + b"\n")
    for path in (files.keystore, *kafka.iterdir(), kafka):
        os.chown(path, _KAFKA_UID, -1)
    for user in USERS:
        os.chown(password_file(files, user), _CLIENT_UID, -1)
    for path in (root, root / "tls", root / "secrets"):
        path.chmod(0o755)
    files.ca.chmod(0o644)
    print(f"secrets in {root}: CA, broker certificate for {', '.join(hosts)}, users {', '.join(USERS)}")


def apply_acls_from_env() -> None:
    """The ACLs for the topics and app id of the environment, as the user of the environment (admin)."""
    from confluent_kafka.admin import AdminClient

    from clearance.kafka import client_config, probe

    settings = Settings.from_env()
    probe(settings)
    admin = AdminClient(client_config(settings))
    for future in admin.create_acls(acl_bindings(settings), request_timeout=30).values():
        future.result()
    print(f"ACLs set for worker, replayer and monitor on {settings.bootstrap}")


def main(argv: list[str]) -> int:
    """`python -m ops.secure prepare DIR [HOST...]` or `python -m ops.secure acls` (docker-compose.secure.yml)."""
    if argv[:1] == ["prepare"] and len(argv) >= 2:
        prepare_compose(Path(argv[1]), tuple(argv[2:]) or ("kafka", "localhost"))
        return 0
    if argv == ["acls"]:
        apply_acls_from_env()
        return 0
    print(main.__doc__)
    return 2


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
