# syntax=docker/dockerfile:1
# The nodedrift image: the release binary alone on a distroless base (glibc, libgcc, CA
# certificates; no shell, no package manager). Nothing is fetched when it runs: the binary
# carries its profiles and reads the host it is pointed at.
#
#   docker build -t nodedrift --build-arg REVISION="$(git rev-parse HEAD)" .
#
# Two stages: build the binary, then copy it alone into the final image.

FROM rust:1-bookworm AS build
WORKDIR /src
# The dependencies first, in a layer of their own: a source change does not download them
# again, and the build below runs offline. (Cargo reads the manifest's targets only when it
# builds them, so the tests and benches it names need not be here.)
COPY Cargo.toml Cargo.lock ./
RUN cargo fetch --locked
COPY agent agent
RUN cargo build --release --locked --offline --bin nodedrift \
 && install -D -m 0755 target/release/nodedrift /out/nodedrift

# The same Debian release as the build stage, so the binary finds the glibc it was linked for.
# The image name fixes the release (Debian 12); distroless publishes no version tags, only
# rebuilds of `latest` with that release's security updates. Freeze one with @sha256:<digest>.
# hadolint ignore=DL3007
FROM gcr.io/distroless/cc-debian12:latest
# Cargo.toml's version; REVISION is the commit built.
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="nodedrift" \
      org.opencontainers.image.description="Node agent that detects drift of Kubernetes worker nodes from their supported baseline" \
      org.opencontainers.image.url="https://github.com/nodedrift/nodedrift" \
      org.opencontainers.image.source="https://github.com/nodedrift/nodedrift" \
      org.opencontainers.image.documentation="https://github.com/nodedrift/nodedrift#readme" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="nodedrift" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:latest"
COPY --from=build /out/nodedrift /usr/bin/nodedrift
# In the DaemonSet the host's / is mounted read-only here.
ENV NODEDRIFT_HOST_ROOT=/host
# uid 0, on purpose: the agent's job is reading the host's root-only files (kubeconfigs, PKI,
# sudoers) and connecting to containerd's socket (srw-rw---- root:root; connect needs write
# permission). Kubernetes grants a container's added capabilities (DAC_READ_SEARCH, SYS_PTRACE)
# to a non-root process only in its bounding set, never as effective ones, so as any other
# uid the agent would read nothing more than a normal user; file capabilities on the binary
# would need allowPrivilegeEscalation: true. The pod instead runs it as root with every other
# capability dropped, no privilege escalation and a read-only root file system (deploy/).
# hadolint ignore=DL3002
USER 0:0
ENTRYPOINT ["/usr/bin/nodedrift"]
CMD ["check", "--format", "json"]
