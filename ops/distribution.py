"""The Apache Kafka jars for the local broker, fetched from Maven Central by Maven.

We pin one Kafka version for the local broker, docker-compose.yml and CI. Maven
resolves `org.apache.kafka:kafka_2.13` and its runtime dependencies into
`<kafka_home>/<version>/libs`, which `java -cp 'libs/*' kafka.Kafka` runs. A
`.complete` stamp marks a finished download, so an interrupted one is redone.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

KAFKA_VERSION = "4.4.0"
SCALA_VERSION = "2.13"
# Kafka 4's own scripts ship log4j2; the kafka_2.13 POM leaves the backend out.
# kafka-clients asks for slf4j-api 1.7, which cannot find log4j's slf4j2 binding.
LOG4J_VERSION = "2.24.3"
SLF4J_VERSION = "2.0.17"

_POM = """<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>clearance.local</groupId>
  <artifactId>kafka-broker-dist</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_{scala}</artifactId>
      <version>{kafka}</version>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-api</artifactId>
      <version>{slf4j}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-core</artifactId>
      <version>{log4j}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j2-impl</artifactId>
      <version>{log4j}</version>
    </dependency>
  </dependencies>
</project>
"""


class KafkaDistError(RuntimeError):
    """The Kafka jars could not be fetched (no Maven, no network, bad version)."""


def dist_dir(kafka_home: Path, version: str = KAFKA_VERSION) -> Path:
    return kafka_home / version


def ensure_jars(kafka_home: Path, version: str = KAFKA_VERSION) -> Path:
    """Return the folder of Kafka's jars, downloading them first if needed."""
    root = dist_dir(kafka_home, version).resolve()
    libs = root / "libs"
    stamp = root / ".complete"
    if stamp.exists():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaDistError("Maven (mvn) is not installed: it fetches the Kafka jars")
    root.mkdir(parents=True, exist_ok=True)
    if libs.exists():
        shutil.rmtree(libs)
    pom = root / "pom.xml"
    pom.write_text(
        _POM.format(scala=SCALA_VERSION, kafka=version, log4j=LOG4J_VERSION, slf4j=SLF4J_VERSION), encoding="utf-8"
    )
    command = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={libs}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        tail = (result.stdout + result.stderr)[-3000:]
        raise KafkaDistError(f"mvn could not fetch Kafka {version}:\n{tail}")
    stamp.write_text(version + "\n", encoding="utf-8")
    return libs


def jars_size(libs: Path) -> int:
    """Total bytes of the jars in `libs` (reported by `clearance broker status`)."""
    return sum(p.stat().st_size for p in libs.glob("*.jar"))
