# Multi-stage: build with the Rust toolchain, ship only the binary on a slim base.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# libgit2 is built from source by git2 (no OpenSSL: AWS calls use rustls).
RUN apt-get update && apt-get install -y --no-install-recommends pkg-config make \
    && rm -rf /var/lib/apt/lists/*
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY schema ./schema
# Cargo.toml declares the bench target; cargo refuses a manifest whose target file is missing.
COPY benches ./benches
RUN cargo build --release --locked --bin estate

FROM debian:bookworm-slim
# CA certificates for TLS to AWS endpoints; git for `estate reconcile --remote`, which fetches
# with the git command line.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates git \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --create-home estate
# The checkout mounted at /work belongs to the host's user, not uid 10001: git and libgit2
# refuse such a repository (CVE-2022-24765) unless trusted. /work alone is trusted.
RUN git config --system --add safe.directory /work
COPY --from=build /src/target/release/estate /usr/local/bin/estate
USER estate
WORKDIR /work
ENTRYPOINT ["estate"]
CMD ["--help"]
