# closeup: the Discord bot (default) or a GPU worker for the Redis queue, on a CUDA runtime image.
#   Build:       docker build -t closeup .
#   Bot:         docker run --gpus all -e DISCORD_TOKEN -v closeup-data:/data -v closeup-models:/models closeup
#   GPU worker:  docker run --gpus all -e CLOSEUP_QUEUE__BACKEND=redis -e CLOSEUP_QUEUE__REDIS_URL=redis://host:6379/0 \
#                  -v closeup-models:/models closeup worker
#   Check:       docker run --rm closeup doctor
# docker-compose.yml runs the scale-out set: bot + Redis + one GPU worker.
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

# torch must match the CUDA runtime above: the cu128 build of the release closeup pins.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CLOSEUP_FACES__INSIGHTFACE_ROOT=/models/insightface \
    HF_HOME=/models/huggingface \
    CLOSEUP_STORE__DATA_DIR=/data \
    CLOSEUP_QUEUE__PATH=/data/queue.db \
    CLOSEUP_METRICS__HOST=0.0.0.0 \
    CLOSEUP_LOGGING__FORMAT=json

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
RUN python3 -m venv /opt/venv
ENV PATH="/opt/venv/bin:$PATH"

# torch first, from the CUDA index; installing closeup afterwards keeps it (same version).
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"

COPY pyproject.toml README.md ./
COPY bot ./bot
COPY generation ./generation
RUN pip install ".[gpu,insightface,redis]"

COPY config.example.toml /etc/closeup/config.toml

# An unprivileged user; models (Hugging Face cache, insightface packs) and data (SQLite store, queue
# journal, photos) live in volumes so an image upgrade keeps them.
RUN useradd --create-home --uid 10001 closeup \
    && mkdir -p /data /models \
    && chown 10001 /data /models
VOLUME ["/data", "/models"]
USER 10001

# Prometheus metrics and /healthz (the bot only; a worker has no web server).
EXPOSE 9464
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=4).status != 200)"]

ENTRYPOINT ["closeup", "--config", "/etc/closeup/config.toml"]
CMD ["bot"]
