# syntax=docker/dockerfile:1
# Production image: `pms serve` (uvicorn + uvloop + httptools, one worker per CPU) on port 8000; the same
# image runs the job worker with `pms worker --no-migrate` (docker-compose.yml's `worker` service).
# Needs DATABASE_URL and REDIS_URL (see docker-compose.yml); without them an embedded PostgreSQL and Redis
# are started in /app/var.

# -- 1. the staff/patient SPA (skipped until frontend/ exists) ------------------------------------------
FROM node:20-slim AS frontend
WORKDIR /build
# `frontend*` matches nothing until the SPA exists; pyproject.toml is listed so COPY always has a source.
COPY pyproject.toml frontend* ./frontend/
RUN if [ -f frontend/package.json ]; then \
        cd frontend && npm install --no-audit --no-fund && npm run build; \
    else \
        mkdir -p frontend/dist; \
    fi

# -- 2. the Python package in a venv (no build tools reach the final image) --------------------------------
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README* ./
COPY src ./src
RUN /opt/venv/bin/pip install .

# -- 3. runtime -----------------------------------------------------------------------------------------
FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOST=0.0.0.0 \
    PORT=8000 \
    PMS_DATA_DIR=/app/var
RUN useradd --system --uid 10001 --user-group --home-dir /app --no-create-home pms
WORKDIR /app
COPY --from=build /opt/venv /opt/venv
# `pms migrate` finds alembic.ini by walking up from the working directory.
COPY alembic.ini ./
COPY migrations ./migrations
COPY --from=frontend /build/frontend/dist ./frontend/dist
RUN mkdir -p var && chown pms:pms var
USER pms
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import json, os, urllib.request as u; \
r = u.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8000'), timeout=4); \
raise SystemExit(json.load(r)['status'] != 'ok')"
# Migrate first (an advisory lock makes concurrent replicas take turns), then serve; exec so that
# `pms serve` is PID 1 and gets SIGTERM from `docker stop`.
CMD ["sh", "-c", "pms migrate && exec pms serve --no-migrate --host 0.0.0.0 --port \"$PORT\""]
