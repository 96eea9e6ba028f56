# The clearance worker image (docker-compose.yml's worker, topics, replayer and monitor
# services): `clearance worker`, `clearance topics create`, `clearance replay` and
# `clearance monitor`. Only the packages those need: no benchmarks, trace generator or embedded runner (.dockerignore keeps them
# out of the build context), and no `tools` extra (numpy, matplotlib).

# The core's hot modules compiled with mypyc (scripts/build_native.py) in the full image, which
# has a C compiler, into /usr/local/clearance-native: the same Python as the slim image below.
# pipeline/compiled.py loads the build only when its manifest matches the installed sources.
FROM python:3.11 AS native
WORKDIR /app
COPY pipeline ./pipeline
COPY scripts/build_native.py ./scripts/
# mypy (mypyc) of pyproject.toml's dev extra, Python 3.11's setuptools, and what the core
# imports (msgspec, orjson: mypyc needs their types), at pyproject.toml's versions
RUN pip install --no-cache-dir --disable-pip-version-check \
        mypy==2.4.1 setuptools==65.5.0 msgspec==0.22.0 orjson==3.13.0 \
    && python scripts/build_native.py --strict

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md constraints.txt ./
COPY pipeline ./pipeline
COPY clearance ./clearance
COPY agents ./agents
COPY ops ./ops
COPY monitor ./monitor
RUN pip install -c constraints.txt . && mkdir -p /data && chown nobody /data
COPY --from=native /usr/local/clearance-native /usr/local/clearance-native
USER nobody
# The worker's HTTP endpoints bind to 127.0.0.1 by default; in a container the probes and
# Prometheus come from outside, and the port is published to the host's 127.0.0.1 only.
ENV KAFKA_BOOTSTRAP=kafka:9092 CLEARANCE_DATA_DIR=/data CLEARANCE_WEB_BIND=0.0.0.0 CLEARANCE_MONITOR_BIND=0.0.0.0
# glibc: two malloc arenas instead of 8 per core (RocksDB's and librdkafka's threads each took
# one and kept what they freed; benchmarks/RESULTS.md, issue 13).
ENV MALLOC_ARENA_MAX=2
VOLUME ["/data"]
EXPOSE 6066
CMD ["clearance", "worker"]
