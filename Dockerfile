# The Weston patron proxy image: one process per container (replicas scale with docker-compose).

# Build stage: the full image has the C compiler that builds the rewriter's compiled scans
# (proxy/_scan.pyx); the wheel it makes is all the runtime image takes from it.
FROM python:3.11 AS build
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY proxy ./proxy
RUN pip wheel --no-cache-dir --wheel-dir /wheels . \
 && python -c "import sys, zipfile, glob; names = zipfile.ZipFile(glob.glob('/wheels/weston_proxy-*.whl')[0]).namelist(); sys.exit(not any(n.startswith('proxy/_scan.') and n.endswith('.so') for n in names))"

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A fixed uid, so secret files on the host can be given to it (chown 10001, chmod 600).
RUN useradd --system --uid 10001 --user-group --home-dir /nonexistent --shell /usr/sbin/nologin weston \
 && mkdir -p /etc/weston /var/lib/weston/keys \
 && chown -R weston:weston /var/lib/weston \
 && chmod 700 /var/lib/weston/keys

COPY --from=build /wheels /wheels
RUN pip install /wheels/*.whl && rm -rf /wheels

USER weston
WORKDIR /var/lib/weston
EXPOSE 8080
# aiohttp drains in-flight requests on SIGTERM (server.shutdown_grace_s); compose waits for it.
STOPSIGNAL SIGTERM
CMD ["weston-proxy", "serve", "--config", "/etc/weston/proxy.toml"]
