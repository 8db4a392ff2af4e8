# closeup on a CUDA runtime image. Build: docker build -t closeup .
# Run the bot: docker run --gpus all -e DISCORD_TOKEN -v closeup-data:/data -v ~/.insightface:/models/insightface closeup
# Check a photo: docker run -v "$PWD":/photos closeup check /photos/me.jpg
FROM nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    CLOSEUP_FACES__INSIGHTFACE_ROOT=/models/insightface \
    CLOSEUP_STORE__DATA_DIR=/data \
    CLOSEUP_QUEUE__PATH=/data/queue.db \
    HF_HOME=/models/huggingface

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
RUN python3.11 -m venv /opt/venv
ENV PATH="/opt/venv/bin:$PATH"

COPY pyproject.toml README.md ./
COPY bot ./bot
COPY generation ./generation
RUN pip install ".[gpu,insightface]"

COPY config.example.toml /etc/closeup/config.toml

# Unprivileged user; model packs and data live in volumes.
RUN useradd --create-home --uid 10001 closeup \
    && mkdir -p /data /models \
    && chown 10001 /data /models
VOLUME ["/data", "/models"]
USER 10001

ENTRYPOINT ["closeup", "--config", "/etc/closeup/config.toml"]
CMD ["bot"]
