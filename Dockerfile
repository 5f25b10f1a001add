# chatrun container image.
#
#   docker build -t chatrun .
#   docker run --rm -p 8080:8080 -v chatrun-data:/app/data chatrun
#
# Configuration comes from the embedded defaults, ./chatrun.toml in /app if you mount one, or
# CHATRUN_* environment variables (see config/example.toml). The runtime image needs no C
# libraries: SQLite is compiled into the binary and TLS is rustls with ring.

# --- build -------------------------------------------------------------------------------------
FROM rust:1.95-bookworm AS builder
WORKDIR /src

# Dependencies first, with placeholder sources, so that changing chatrun's own code does not
# rebuild every crate. Cargo refuses a manifest whose [[bench]] targets have no file, so each
# bench named in Cargo.toml gets an empty one. .ci/dockerfile-deps runs this step in CI.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && for bench in $(sed -n '/^\[\[bench\]\]/,/^name/ s/^name = "\(.*\)"/\1/p' Cargo.toml); do \
        echo 'fn main() {}' > "benches/$bench.rs"; \
    done \
    && cargo build --release --locked \
    && rm -rf src benches

# The real sources (templates/, migrations/ and askama.toml are read at compile time). The
# touch makes sure cargo rebuilds chatrun over the placeholder, whatever the files' times.
COPY . .
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked

# --- run ---------------------------------------------------------------------------------------
FROM debian:bookworm-slim

# ca-certificates: the root certificates rustls checks an https:// Mattermost against.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 chatrun \
    && useradd --system --uid 10001 --gid chatrun --create-home --home-dir /home/chatrun chatrun

COPY --from=builder /src/target/release/chatrun /usr/local/bin/chatrun

WORKDIR /app
# The example jobs (they need only sh, which the image has) and the documented configuration.
COPY jobs/ /app/jobs/
COPY config/ /app/config/
# The database, run logs and local token live in /app/data: mount a volume there. It is created
# here, owned by the chatrun user, so a new named volume starts with that owner.
RUN mkdir -p /app/data && chown chatrun:chatrun /app/data
# The example jobs write their JUnit reports under jobs/reports.
RUN mkdir -p /app/jobs/reports && chown chatrun:chatrun /app/jobs/reports

# Listen on every interface inside the container (the default is loopback only).
ENV CHATRUN_LISTEN=0.0.0.0:8080

USER 10001:10001
EXPOSE 8080
CMD ["chatrun", "serve"]
