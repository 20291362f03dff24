# syntax=docker/dockerfile:1
#
# Sichat node image: `sichatd` (server, the entrypoint) plus `sichat` (wallet CLI).
#   docker build -t sichat .
#   docker run -p 127.0.0.1:8080:8080 -v sichat-data:/var/lib/sichat \
#     -e SICHAT_PUBLIC_URL=http://localhost:8080 sichat
# See docker-compose.yml for a PostgreSQL-backed setup.

# ---------------------------------------------------------------- builder
FROM rust:1.95-bookworm AS builder

# josekit (and reqwest's native-tls) link OpenSSL; SQLite is bundled by libsqlite3-sys.
RUN apt-get update \
    && apt-get install -y --no-install-recommends pkg-config libssl-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .

# Migrations (migrations/sqlite, migrations/postgres) are embedded at compile time.
# target/ lives in a cache mount, so copy the binaries out within the same RUN.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p sichat-server -p sichat-wallet-cli \
    && install -D -m 0755 target/release/sichatd /out/sichatd \
    && install -D -m 0755 target/release/sichat /out/sichat

# ---------------------------------------------------------------- runtime
FROM debian:bookworm-slim

# postgresql-client gives pg_dump for `sichatd admin backup` on PostgreSQL. It is
# Debian's 15, and pg_dump refuses newer servers: docker-compose.yml uses postgres:15.
# curl is for the HEALTHCHECK.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl libssl3 postgresql-client \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 sichat \
    && useradd --system --uid 10001 --gid sichat --home-dir /var/lib/sichat --no-create-home \
       --shell /usr/sbin/nologin sichat \
    && install -d -m 0700 -o sichat -g sichat /var/lib/sichat

COPY --from=builder /out/sichatd /out/sichat /usr/local/bin/

ENV SICHAT_DATA_DIR=/var/lib/sichat \
    SICHAT_LISTEN=0.0.0.0:8080 \
    SICHAT_LOG_FORMAT=json

# Holds master.key (and the SQLite database when no SICHAT_DATABASE_URL is set).
# Losing it loses the node's keys.
VOLUME ["/var/lib/sichat"]
WORKDIR /var/lib/sichat
USER sichat:sichat
EXPOSE 8080

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1

ENTRYPOINT ["sichatd"]
CMD ["serve"]
