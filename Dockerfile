# Slim, non-root image of the CDP core server.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY app ./app
COPY graphql_schema ./graphql_schema
# The otel extra: tracing stays off until OTEL_* variables ask for it (README: Tracing).
RUN pip install --no-cache-dir --prefix=/install -c constraints.txt '.[otel]'

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    CDP_HOST=0.0.0.0 \
    CDP_PORT=8000 \
    CDP_DATABASE_URL=sqlite:////data/cdp.sqlite3 \
    CDP_FIXTURES_DIR=/srv/fixtures
COPY --from=build /install /usr/local
COPY fixtures /srv/fixtures
RUN useradd --system --uid 10001 --home-dir /srv cdp && mkdir -p /data && chown cdp /data
USER cdp
WORKDIR /srv
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2).status == 200 else 1)"
CMD ["python", "-m", "app", "serve"]
