# sealdrop server image. It never holds the reviewer's secret keys: mount only
# reviewer.pub and reply-signing.pub. Run with a read-only root file system and three
# volumes (the replies volume is where the operator puts the reviewer's reply files):
#   docker run --read-only --tmpfs /tmp:size=16m,mode=1777 \
#     -v sealdrop-spool:/var/lib/sealdrop/spool -v sealdrop-state:/var/lib/sealdrop/state \
#     -v sealdrop-replies:/var/lib/sealdrop/replies \
#     -v "$PWD/reviewer.pub:/etc/sealdrop/reviewer.pub:ro" \
#     -v "$PWD/reply-signing.pub:/etc/sealdrop/reply-signing.pub:ro" sealdrop
#
# Build it with scripts/build-image (exactly what git tracks at HEAD) or `docker build .`
# (the checkout filtered by .dockerignore, which lets in only the package's files).
# Two stages: the first installs the package into a virtual environment; the image is
# the second, which copies only that environment, so no layer of it holds the build
# context.
FROM python:3.11-slim-bookworm AS build

WORKDIR /src
COPY . ./
RUN python -m venv /opt/sealdrop \
    && /opt/sealdrop/bin/pip install --no-cache-dir --disable-pip-version-check /src

FROM python:3.11-slim-bookworm

# Debian's tor publishes the onion service; nothing else from apt is needed.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends tor \
    && rm -rf /var/lib/apt/lists/*

# A fixed numeric id: volumes keep their owner across rebuilds, and an orchestrator
# can see that the image runs as non-root (USER below is numeric for that reason).
RUN groupadd --system --gid 10001 sealdrop \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/sealdrop \
        --shell /usr/sbin/nologin sealdrop \
    && install -d -o sealdrop -g sealdrop -m 0700 /var/lib/sealdrop /var/lib/sealdrop/spool \
        /var/lib/sealdrop/state /var/lib/sealdrop/replies \
    && install -d -m 0755 /etc/sealdrop

# The installed package and its dependencies only: no source tree, tests, docs or history.
COPY --from=build /opt/sealdrop /opt/sealdrop

ENV PATH=/opt/sealdrop/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SEALDROP_SPOOL_DIR=/var/lib/sealdrop/spool \
    SEALDROP_STATE_DIR=/var/lib/sealdrop/state \
    SEALDROP_REPLIES_DIR=/var/lib/sealdrop/replies \
    SEALDROP_PUBLIC_KEY_FILE=/etc/sealdrop/reviewer.pub \
    SEALDROP_REPLY_SIGNING_KEY_FILE=/etc/sealdrop/reply-signing.pub

VOLUME ["/var/lib/sealdrop/spool", "/var/lib/sealdrop/state", "/var/lib/sealdrop/replies"]
USER 10001:10001

HEALTHCHECK --interval=60s --timeout=10s --start-period=120s --retries=3 \
    CMD ["sealdrop", "check", "--quiet"]

ENTRYPOINT ["sealdrop", "serve"]
