# syntax=docker/dockerfile:1
# Tollway gateway image. Build: docker build -t tollway .
# Run:   docker run -p 8000:8000 -e TOLLWAY_DATABASE_URL=postgresql+psycopg://... tollway
# The entrypoint (deploy/entrypoint.sh) migrates the store, then runs `tollway serve`;
# tests/deploy/test_container.py runs that same script as a real process in CI.

# --- build stage: a virtualenv with the pinned dependencies, then Tollway itself ----------------
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# The lock file first, alone, so code changes do not invalidate the dependency layer.
COPY requirements.lock ./
RUN pip install -r requirements.lock
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-deps .

# --- runtime stage: the virtualenv and the deploy scripts, running as an unprivileged user ------
FROM python:3.11-slim AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TOLLWAY_HOST=0.0.0.0 \
    TOLLWAY_PORT=8000 \
    TOLLWAY_WORKERS=1 \
    TOLLWAY_DATABASE_URL=sqlite:////data/tollway.db \
    TOLLWAY_TRUSTED_PROXIES=""
RUN groupadd --system --gid 10001 tollway \
    && useradd --system --uid 10001 --gid tollway --home-dir /data --shell /usr/sbin/nologin tollway \
    && mkdir -p /data && chown tollway:tollway /data
COPY --from=build /opt/venv /opt/venv
COPY deploy/entrypoint.sh deploy/healthcheck.py /app/
WORKDIR /data
USER tollway:tollway
EXPOSE 8000
VOLUME ["/data"]
# python, not curl: the slim image has no curl.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "/app/healthcheck.py"]
ENTRYPOINT ["/app/entrypoint.sh"]
CMD ["serve"]
