FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DATABASE_PATH=/data/bot.sqlite3

WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY bot ./bot
COPY cogs ./cogs
RUN pip install . \
    && useradd --create-home --uid 10001 pixbot \
    && mkdir -p /data && chown pixbot:pixbot /data

USER pixbot
VOLUME ["/data"]
# Settings come from the environment (docker run --env-file .env); .env is never copied in.
ENTRYPOINT ["python", "-m", "bot"]
