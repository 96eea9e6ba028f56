"""Where the local broker keeps its files, and the configuration it runs with.

One folder per port under `<kafka_home>/run/<port>`: server.properties,
log4j2.xml, kafka.pid, kafka.log (log4j), kafka.out (the JVM's own output)
and data/ (the KRaft log directory, kept across restarts).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# Broker settings for development and tests: one node, so every internal topic has
# replication factor 1; no rebalance delay, so a test's consumer joins at once;
# messages up to 32 MiB, since a 10 MB input becomes a ~13.4 MB base64 dead letter.
_SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs={data}
num.partitions=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
message.max.bytes=33554432
replica.fetch.max.bytes=33554432
socket.request.max.bytes=104857600
log.retention.hours=168
log.segment.bytes=268435456
"""

_LOG4J2_XML = """\
<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <RollingFile name="file" fileName="{log}" filePattern="{log}.%i">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
      <SizeBasedTriggeringPolicy size="20 MB"/>
      <DefaultRolloverStrategy max="3"/>
    </RollingFile>
  </Appenders>
  <Loggers>
    <Logger name="state.change.logger" level="WARN"/>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Root level="INFO"><AppenderRef ref="file"/></Root>
  </Loggers>
</Configuration>
"""


# `clearance broker start --secure`: the client listener speaks SASL_SSL (SCRAM-SHA-512,
# PEM keystore), the controller listener stays PLAINTEXT on 127.0.0.1, the KRaft
# StandardAuthorizer denies whatever no ACL allows, `admin` is the one super user.
# The broker's own inter-broker client logs in as admin (so this file is mode 0600).
_SECURE_LISTENERS = """\
listeners=SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=SASL_SSL://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=SASL_SSL
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=\
org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="{admin_password}";
ssl.keystore.type=PEM
ssl.keystore.location={keystore}
ssl.truststore.type=PEM
ssl.truststore.location={ca}
ssl.client.auth=none
ssl.endpoint.identification.algorithm=https
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users={super_users}
allow.everyone.if.no.acl.found=false
auto.create.topics.enable=false
"""
_PLAIN_LISTENERS = """\
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
"""


@dataclass(frozen=True, slots=True)
class BrokerFiles:
    """The files of the local broker listening on `port`."""

    root: Path
    port: int

    @property
    def controller_port(self) -> int:
        return self.port + 1

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def properties(self) -> Path:
        return self.root / "server.properties"

    @property
    def log4j(self) -> Path:
        return self.root / "log4j2.xml"

    @property
    def pid(self) -> Path:
        return self.root / "kafka.pid"

    @property
    def log(self) -> Path:
        return self.root / "kafka.log"

    @property
    def out(self) -> Path:
        return self.root / "kafka.out"

    @property
    def lock(self) -> Path:
        return self.root / "start.lock"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def ca(self) -> Path:
        """The CA certificate of a --secure broker (clients: KAFKA_SSL_CA_LOCATION)."""
        return self.root / "tls" / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.root / "tls" / "ca.key"

    @property
    def keystore(self) -> Path:
        """The broker's private key and certificate chain (PEM), for 127.0.0.1 and localhost."""
        return self.root / "tls" / "broker.pem"

    @property
    def credentials(self) -> Path:
        """The generated SCRAM users of a --secure broker (JSON, mode 0600)."""
        return self.root / "credentials.json"

    @property
    def secure(self) -> bool:
        """Whether the configuration last written is the --secure one."""
        try:
            return "SASL_SSL://" in self.properties.read_text(encoding="utf-8")
        except OSError:
            return False

    @property
    def formatted(self) -> bool:
        return (self.data / "meta.properties").exists()


def broker_files(kafka_home: Path, port: int) -> BrokerFiles:
    return BrokerFiles(root=(kafka_home / "run" / str(port)).resolve(), port=port)


def write_config(files: BrokerFiles, admin_password: str | None = None) -> None:
    """Write server.properties and log4j2.xml (rewritten at every start); `admin_password`: --secure."""
    files.root.mkdir(parents=True, exist_ok=True)
    ports = {"port": files.port, "controller_port": files.controller_port}
    properties = _SERVER_PROPERTIES.format(**ports, data=files.data)
    if admin_password is None:
        listeners = _PLAIN_LISTENERS.format(**ports)
    else:
        # The controller listener is PLAINTEXT, so the node's own broker-to-controller requests
        # come from User:ANONYMOUS; they need the cluster actions of a super user.
        listeners = _SECURE_LISTENERS.format(
            **ports,
            admin_password=admin_password,
            keystore=files.keystore,
            ca=files.ca,
            super_users="User:admin;User:ANONYMOUS",
        )
        properties = properties.replace("auto.create.topics.enable=true\n", "")
    properties = properties.replace(_PLAIN_LISTENERS.format(**ports), listeners)
    files.properties.touch(mode=0o600)
    files.properties.chmod(0o600)
    files.properties.write_text(properties, encoding="utf-8")
    files.log4j.write_text(_LOG4J2_XML.format(log=files.log), encoding="utf-8")
