# The clearance worker image (docker-compose.yml's worker, topics and replayer services):
# `clearance worker`, `clearance topics create` and `clearance replay`. Only the packages
# those need: no benchmarks, trace generator or embedded runner (.dockerignore keeps them
# out of the build context), and no `tools` extra (numpy, matplotlib).
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY clearance ./clearance
COPY agents ./agents
COPY ops ./ops
RUN pip install . && mkdir -p /data && chown nobody /data
USER nobody
ENV KAFKA_BOOTSTRAP=kafka:9092 CLEARANCE_DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 6066
CMD ["clearance", "worker"]
