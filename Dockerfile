# The project's image: the `lakehouse` CLI, Dagster, dbt and DuckDB. The lake lives in a volume at /lake.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_LINK_MODE=copy \
    PATH=/opt/venv/bin:$PATH \
    LAKEHOUSE_HOME=/lake

# gcc builds the drain's small C reader (ingestion/_rdkafka_batches.c) when the project installs.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/* \
    && pip install --no-cache-dir uv

WORKDIR /app
# Dependencies first, so a code change does not reinstall them.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project

COPY . .
# dbt parse fails the build on a broken dbt project, rather than the first run.
RUN uv sync --frozen --no-dev \
    && DBT_TARGET_PATH=/app/dbt_project/target DBT_PROFILES_DIR=/app/dbt_project dbt parse --project-dir dbt_project --quiet

VOLUME ["/lake"]
EXPOSE 3000
CMD ["lakehouse", "--help"]
