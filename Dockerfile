# debias service image: the API, the worker and the migrations share it.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DEBIAS_DATA_DIR=/data DEBIAS_HOST=0.0.0.0 DEBIAS_PORT=8000
WORKDIR /app

# Dependencies first, so code changes do not reinstall PyTorch.
COPY pyproject.toml README.md ./
RUN mkdir -p audit/loaders api/routes api/services api/web/templates api/web/static \
    && for p in audit audit/loaders api api/routes api/services api/web api/web/templates api/web/static; do \
         touch "$p/__init__.py"; done \
    && pip install --no-cache-dir -e . && rm -rf audit api

COPY alembic.ini ./
COPY migrations ./migrations
COPY audit ./audit
COPY api ./api

RUN useradd --create-home --uid 1000 debias && mkdir -p /data && chown debias /data
USER debias
VOLUME /data
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"
CMD ["debias", "serve", "--no-worker"]
