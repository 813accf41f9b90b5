# syntax=docker/dockerfile:1
# bridge serving a PSGI app; runtime: Perl 5.36: libprotocol-http2-perl, libplack-perl.
# Build from the repository's root:
#   docker build -f deploy/docker/Dockerfile.perl -t bridge-perl .
# Then add your app in /srv/app (FROM bridge-perl; COPY . /srv/app) or mount
# it there; see deploy/docker/README.md.

# Build stage: the bridge binary, static (no cgo), with the runner shims
# embedded in it.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY cmd cmd
COPY bridge bridge
COPY runners runners
COPY proto proto
COPY python python
COPY perl perl
COPY ruby ruby
RUN CGO_ENABLED=0 go build -trimpath -ldflags=-s -o /out/bridge ./cmd/bridge

# Runtime stage: Debian 12 with the interpreter and the runner's packages,
# installed by the same script CI runs on a host (deploy/docker_test.go).
FROM debian:12-slim
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="bridge-perl" \
      org.opencontainers.image.description="bridge application server for PSGI apps, behind nginx" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="docker.io/library/debian:12-slim"
COPY deploy/docker/install-runtime.sh /usr/local/sbin/install-runtime.sh
RUN BRIDGE_APT_CLEAN=1 /usr/local/sbin/install-runtime.sh perl
COPY --from=build /out/bridge /usr/local/bin/bridge
COPY deploy/docker/bridge.yaml /etc/bridge/bridge.yaml

# The app the config's runner loads from /srv/app; the shims are extracted
# into bridge's own cache, which nobody else can write. USER is the bridge
# user by number (install-runtime.sh makes it 10001), so Kubernetes'
# runAsNonRoot can check it.
ENV BRIDGE_RUNNER=perl:app.psgi \
    BRIDGE_CACHE_DIR=/var/lib/bridge/cache
USER 10001:10001
# The shims go into the cache now, as the serving user: with the root
# filesystem read-only (Kubernetes' readOnlyRootFilesystem), serve only
# verifies them.
RUN ["bridge", "shims"]
WORKDIR /srv/app
EXPOSE 9100
# Healthy once a worker is ready and bridge is not draining: /readyz on the
# admin address serve uses (bridge.yaml's, or BRIDGE_ADMIN if set).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["bridge", "healthcheck", "--config", "/etc/bridge/bridge.yaml"]
# SIGTERM (docker stop) drains: requests in flight get --grace (30s) to
# finish, so give docker stop a longer timeout (compose: stop_grace_period).
STOPSIGNAL SIGTERM
ENTRYPOINT ["bridge", "serve"]
CMD ["--config", "/etc/bridge/bridge.yaml"]
