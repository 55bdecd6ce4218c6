# tweetchat: serves on port 8000 as a non-root user. The database is a SQLite file in /data by
# default; set TWEETCHAT_DATABASE_URL for PostgreSQL. The schema is upgraded on start.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY app ./app
COPY migrations ./migrations
COPY frontend ./frontend
RUN pip install . \
    && useradd --create-home --uid 10001 tweetchat \
    && mkdir /data \
    && chown tweetchat:tweetchat /data

USER tweetchat
WORKDIR /data
ENV TWEETCHAT_DATABASE_URL=sqlite:////data/tweetchat.db
VOLUME ["/data"]
EXPOSE 8000
CMD ["tweetchat", "serve", "--host", "0.0.0.0", "--port", "8000"]
