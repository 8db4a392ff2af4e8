# syntax=docker/dockerfile:1
# closeup: the Discord bot (default) or a GPU worker for the Redis queue.
#   Build:       docker build -t closeup .                        (bot + embedded GPU worker, the default)
#                docker build --target bot -t closeup-bot .       (bot only, no torch: the Redis set-up)
#   Bot:         docker run --gpus all -e DISCORD_TOKEN -v closeup-data:/data -v closeup-models:/models closeup
#   GPU worker:  docker run --gpus all -e CLOSEUP_QUEUE__BACKEND=redis -e CLOSEUP_QUEUE__REDIS_URL=redis://host:6379/0 \
#                  -v closeup-models:/models closeup worker
#   Check:       docker run --rm closeup doctor
# docker-compose.yml runs the scale-out set: bot (bot-only image) + Redis + one GPU worker.
#
# No CUDA base image: torch's wheel brings its own CUDA libraries (a CUDA base would hold them twice);
# the host's NVIDIA driver comes in through the container toolkit (--gpus all).

FROM python:3.11-slim-bookworm AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CLOSEUP_FACES__INSIGHTFACE_ROOT=/models/insightface \
    HF_HOME=/models/huggingface \
    CLOSEUP_STORE__DATA_DIR=/data \
    CLOSEUP_QUEUE__PATH=/data/queue.db \
    CLOSEUP_METRICS__HOST=0.0.0.0 \
    CLOSEUP_LOGGING__FORMAT=json

# OpenCV (the opencv-python wheel, which insightface requires by name) links libGL and GLib when cv2 is
# imported; the slim image has neither.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
RUN python3 -m venv /opt/venv
ENV PATH="/opt/venv/bin:$PATH"

# An unprivileged user; models (Hugging Face cache, insightface packs) and data (SQLite store, queue
# journal, photos) live in volumes so an image upgrade keeps them.
RUN useradd --create-home --uid 10001 closeup \
    && mkdir -p /data /models \
    && chown 10001 /data /models
COPY config.example.toml /etc/closeup/config.toml


# ---- bot only: discord.py, the quality gate and the Redis client; never imports torch ----
FROM base AS bot
ENV CLOSEUP_QUEUE__BACKEND=redis

# Dependencies first, in a layer that only pyproject.toml decides: a code change does not reinstall them.
COPY pyproject.toml README.md LICENSE ./
RUN --mount=type=cache,target=/root/.cache/pip \
    mkdir -p bot generation && touch bot/__init__.py generation/__init__.py \
    && pip install ".[insightface,redis]" \
    && pip uninstall --yes closeup && rm -rf bot generation build ./*.egg-info
COPY bot ./bot
COPY generation ./generation
RUN pip install --no-deps --no-cache-dir .

VOLUME ["/data", "/models"]
USER 10001
EXPOSE 9464
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=4).status != 200)"]
ENTRYPOINT ["closeup", "--config", "/etc/closeup/config.toml"]
CMD ["bot"]


# ---- bot + GPU generation (the default image; also `closeup worker`) ----
FROM base AS gpu

# torch first, from the CUDA index: the cu128 build of the release closeup pins (CUDA 12.8 needs an NVIDIA
# driver >= 570); installing closeup afterwards keeps it (same version). torchvision, built for that torch on
# the same index, is only for generation.editor = "qwen-image-edit" (its processor needs it); a few MB.
ARG TORCH_VERSION=2.13.0
ARG TORCHVISION_VERSION=0.28.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}" --index-url "${TORCH_INDEX}"

COPY pyproject.toml README.md LICENSE ./
RUN --mount=type=cache,target=/root/.cache/pip \
    mkdir -p bot generation && touch bot/__init__.py generation/__init__.py \
    && pip install ".[gpu,insightface,redis]" \
    && pip uninstall --yes closeup && rm -rf bot generation build ./*.egg-info
COPY bot ./bot
COPY generation ./generation
RUN pip install --no-deps --no-cache-dir .

VOLUME ["/data", "/models"]
USER 10001
# Prometheus metrics and /healthz (the bot). A `closeup worker` serves no web page: it reports through its
# Redis heartbeat (`closeup doctor` on the bot lists the workers), so its health check passes by design
# instead of marking it unhealthy forever.
EXPOSE 9464
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import sys, urllib.request; worker = b'worker' in open('/proc/1/cmdline', 'rb').read().split(b'\\0'); sys.exit(0 if worker else urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=4).status != 200)"]
ENTRYPOINT ["closeup", "--config", "/etc/closeup/config.toml"]
CMD ["bot"]
