# syntax=docker/dockerfile:1
# Two stages: build the release binary, then ship it alone on a distroless base (glibc, CA
# certificates, no shell, no package manager).

FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY agent agent
# Cargo.toml names these targets; the build needs them present, not their content.
COPY benches benches
COPY tests/integration tests/integration
RUN cargo build --release --locked --bin nodedrift \
 && install -D -m 0755 target/release/nodedrift /out/nodedrift

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/nodedrift /usr/bin/nodedrift
# In the DaemonSet the host's / is mounted read-only here.
ENV NODEDRIFT_HOST_ROOT=/host
# Reading root-only host files needs uid 0 plus the capabilities the pod spec grants;
# the pod spec sets runAsUser: 0 and drops everything else.
USER 0:0
ENTRYPOINT ["/usr/bin/nodedrift"]
CMD ["check", "--format", "json"]
