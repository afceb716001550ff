# The syncledger binary in a small Debian image, run as a non-root user.
#
#   docker build -t syncledger .
#   docker run -p 8080:8080 -v syncledger-data:/var/lib/syncledger syncledger
#
# The build is the one scripts/test.sh tests: the same toolchain (rust-version in
# Cargo.toml), --locked, the default features. api/tests/cli/deploy.rs checks that and runs
# the binary with this file's ENV and deploy/compose.yaml's settings. The debug info is
# split off: the image's binary keeps its symbols (function names in backtraces) but not the
# DWARF; `docker build --target debuginfo --output type=local,dest=out .` writes
# out/syncledger.debug, which gdb finds through the binary's debuglink.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p syncledger-api --bin syncledger \
    && mkdir /out \
    && objcopy --only-keep-debug target/release/syncledger /out/syncledger.debug \
    && objcopy --strip-debug --add-gnu-debuglink=/out/syncledger.debug \
        target/release/syncledger /out/syncledger

FROM scratch AS debuginfo
COPY --from=build /out/syncledger.debug /

FROM debian:bookworm-slim
# ca-certificates: the system roots, for NATS over TLS (async-nats reads the native store).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --user-group --uid 10001 --home-dir /var/lib/syncledger \
        --shell /usr/sbin/nologin syncledger \
    && install -d -m 0700 -o syncledger -g syncledger /var/lib/syncledger
COPY --from=build /out/syncledger /usr/local/bin/syncledger
USER syncledger:syncledger
WORKDIR /var/lib/syncledger
ENV SYNCLEDGER_ADDR=0.0.0.0:8080
ENV SYNCLEDGER_DATA_DIR=/var/lib/syncledger
VOLUME /var/lib/syncledger
EXPOSE 8080
# Liveness only, with what the image has (bash, head, grep): readiness (store, NATS,
# projections caught up) is GET /v1/ready, for the orchestrator to ask.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${SYNCLEDGER_ADDR##*:} && printf 'GET /v1/health HTTP/1.0\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["syncledger"]
CMD ["serve"]
