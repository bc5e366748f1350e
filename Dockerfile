# One image for every tablewatch process: the ingest/Slack server, the alert
# runner, the dashboard and the demo collector (docker-compose.yml and
# deploy/kubernetes/ start it with different commands).
#
#   docker build -t tablewatch:latest .
#   docker run --rm -p 127.0.0.1:8080:8080 -v tablewatch-data:/data tablewatch:latest   # the server on an embedded store
#   docker run --rm -e TABLEWATCH_STORE=bigtable://PROJECT/INSTANCE tablewatch:latest tablewatch store info
#
# The image has no curl: the health checks use Python's urllib or `tablewatch
# alerts status`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY tablewatch ./tablewatch
RUN pip install '.[all]' && rm -rf /src/build

# The example rules file, for `tablewatch alerts run --rules /app/examples/rules.yaml`
# when no rules file is mounted.
WORKDIR /app
COPY examples ./examples

# Never root; HOME is writable (Streamlit keeps its settings there).
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin tablewatch \
    && mkdir -p /data && chown tablewatch:tablewatch /data
USER tablewatch
ENV HOME=/home/tablewatch \
    TABLEWATCH_STORE=sqlite:///data/tablewatch.db

EXPOSE 8080 8501
CMD ["tablewatch", "server", "--host", "0.0.0.0", "--port", "8080"]
