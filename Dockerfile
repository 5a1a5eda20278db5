# Dialog Engine, self-hosted: every api/ function behind the same router as `make dev` (scripts/router.py).
# Build: docker build -t dialog-engine .   Run with docker-compose.yml (PostgreSQL + pgvector, Redis, SRH).
# bookworm pinned: the PGDG repository below needs a known Debian release, and python:3.12-slim moves.
FROM python:3.12-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ENVIRONMENT=production \
    HOST=0.0.0.0 \
    PORT=3000

# pg_dump / pg_restore 16 for `backup create|restore|verify` and the nightly backup job. Debian bookworm
# ships 15, which refuses to dump a PostgreSQL 16 server, so they come from the PostgreSQL (PGDG) repository.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates postgresql-common \
    && /usr/share/postgresql-common/pgdg/apt.postgresql.org.sh -y \
    && apt-get install -y --no-install-recommends postgresql-client-16 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt requirements-server.txt ./
RUN pip install -r requirements-server.txt

COPY . .
RUN python -m compileall -q api functions shared scripts \
    && useradd --uid 10001 --create-home --shell /usr/sbin/nologin dialog

# Non-root; a numeric id so orchestrators can check runAsNonRoot. The app writes only to /tmp.
USER 10001
EXPOSE 3000

HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/api/health' % os.environ.get('PORT', '3000'), timeout=4)"]

CMD ["python", "-m", "scripts", "serve"]
