# The clearance worker image (docker-compose.yml's worker, topics and replayer services).
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY agents ./agents
COPY benchmarks ./benchmarks
RUN pip install . && mkdir -p /data && chown nobody /data
USER nobody
ENV KAFKA_BOOTSTRAP=kafka:9092 CLEARANCE_DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 6066
CMD ["clearance", "worker"]
