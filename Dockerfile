# syntax=docker/dockerfile:1
#
# The rumor agent as a container image: a static (musl) binary on an empty
# base, run as a non-root user. No shell, no package manager, no libc:
# the image holds /usr/local/bin/rumor and nothing else.
#
#   docker build -t rumor:0.1.0 .
#   docker run --rm rumor:0.1.0 --version
#   docker run --rm -p 7946:7946/udp -p 7946:7946 rumor:0.1.0 agent --join 10.0.0.1
#
# `--event-handler` runs its command through `sh -c`, which this image does
# not have. For handlers, build on a base that has a shell (and add the
# handler scripts there), e.g.:
#   docker build --build-arg RUNTIME=busybox:1.37-musl -t rumor:0.1.0-sh .
# It still runs as user 65532.
#
# This is the plain release build; `python3 scripts/build-release.py` makes
# the profile-guided one we benchmark (docs/benchmarks.md), about half as
# much resident code, in ~10 minutes.

ARG RUST_VERSION=1.95
ARG RUNTIME=scratch

FROM rust:${RUST_VERSION}-bookworm AS build
# Set by BuildKit from --platform (amd64 or arm64).
ARG TARGETARCH=amd64
WORKDIR /src
RUN case "${TARGETARCH}" in \
        amd64) arch=x86_64 ;; \
        arm64) arch=aarch64 ;; \
        *) echo "unsupported TARGETARCH ${TARGETARCH}" >&2; exit 1 ;; \
    esac \
    && rustup target add "${arch}-unknown-linux-musl" \
    && echo "${arch}-unknown-linux-musl" > /rust-target
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
# musl targets link statically (crt-static is their default).
RUN cargo build --release --locked -p rumor-cli --target "$(cat /rust-target)" \
    && cp "target/$(cat /rust-target)/release/rumor" /rumor \
    && /rumor --version

FROM ${RUNTIME}
COPY --from=build /rumor /usr/local/bin/rumor
ENV PATH=/usr/local/bin
# 65532: the conventional "nonroot" user of minimal images; no home, no shell.
USER 65532:65532
# Gossip (UDP and TCP) and the HTTP API (loopback unless --http says otherwise).
EXPOSE 7946/udp 7946/tcp 7947/tcp
ENTRYPOINT ["/usr/local/bin/rumor"]
CMD ["agent"]
