# textractd: api, worker pool and (by default) an embedded redis under supervisord.
#   docker build -t textractd .
#   docker run -e API_KEY=... -p 127.0.0.1:5001:5001 textractd
# conf/docker-compose.yml runs redis, api and a scalable pool of workers from this image.
FROM python:3.11-slim-bookworm

# pipefail: a failing `sed` in a pipe must fail the build, not feed apt an empty list.
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The same list scripts/run installs, so the image and a bare host have the same tools.
# Versions are not pinned: Debian 12 ships security fixes as new versions and drops the
# old ones from its mirror, so a pin would break the build at the next point release.
COPY conf/apt-packages.txt /tmp/apt-packages.txt
RUN apt-get update \
    && sed -e 's/#.*//' /tmp/apt-packages.txt \
        | xargs apt-get install -y --no-install-recommends \
    && rm -rf /var/lib/apt/lists/* /tmp/apt-packages.txt

# A fixed uid/gid: volume ownership and Kubernetes' runAsNonRoot need numbers.
RUN groupadd --system --gid 10001 textractd \
    && useradd --system --uid 10001 --gid textractd --home-dir /app \
        --shell /usr/sbin/nologin textractd

WORKDIR /app
COPY . /app
# The code stays root-owned and read-only to the service; only var/ and logs/ are its own.
# -c: the versions conf/constraints.txt pins (scripts/lock), as scripts/run installs them.
RUN pip install --no-cache-dir -c conf/constraints.txt . \
    && rm -rf /app/build /app/*.egg-info \
    && mkdir -p /app/var/spool /app/logs \
    && chown textractd:textractd /app/var /app/var/spool /app/logs \
    && chmod 700 /app/var /app/var/spool

VOLUME ["/app/var", "/app/logs"]
# TEXTRACTD_HOME: var/ and logs/ live under /app even for a `python -m daemon.health` run
# from another directory (the installed package would otherwise look in site-packages).
ENV HOST=0.0.0.0 PORT=5001 TEXTRACTD_HOME=/app
EXPOSE 5001
# Only what makes this container useful: its programs up (whatever its ROLE) and Redis
# reachable. Host-wide warnings (CPU, disk) exit 1, which Docker would call unhealthy.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["/app/scripts/healthcheck.sh", "supervisor", "redis"]

USER 10001:10001
ENTRYPOINT ["/app/scripts/docker-entrypoint"]
