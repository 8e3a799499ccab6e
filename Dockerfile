# clef: one static-ish binary with its templates, catalogues and migrations compiled in
# (src/pages.rs, src/i18n.rs, sqlx::migrate!), so the runtime image holds the binary only.
#
#   docker build -t clef .
#   docker run -p 8080:8080 -e CLEF_ISSUER=https://id.example.com -v clef-data:/var/lib/clef clef
#
# Build stage: the toolchain clef declares (Cargo.toml rust-version 1.94; sqlx 0.9 needs it).
FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, so a source change does not rebuild them: a dummy crate with the real
# manifest and lock file.
COPY Cargo.toml Cargo.lock build.rs ./
RUN mkdir -p src && echo 'fn main() {}' > src/main.rs && echo '' > src/lib.rs \
    && mkdir -p migrations/sqlite migrations/postgres tests/e2e && echo 'fn main() {}' > tests/e2e/main.rs \
    && cargo build --release --locked --bin clef \
    # The dummy's build marks must go, or the real sources (older mtimes) look built already.
    && rm -rf src target/release/.fingerprint/clef-* target/release/deps/clef-* target/release/deps/libclef-*
COPY src src
COPY migrations migrations
COPY templates templates
RUN cargo build --release --locked --bin clef \
    # No OpenSSL, by rule (../shared/DEPENDENCIES.md): only libc, libm, libgcc_s.
    && ! ldd target/release/clef | grep -qi ssl \
    # The data folder, owned by distroless's nonroot user (the runtime image has no shell).
    && mkdir -p /out/var/lib/clef && chown 65532:65532 /out/var/lib/clef && chmod 700 /out/var/lib/clef

# Runtime: distroless "cc" has glibc and libgcc_s (aws-lc and SQLite need nothing else), CA
# roots for SMTP over TLS and upstream providers, and no shell. Runs as uid 65532 (nonroot).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/clef /usr/local/bin/clef
# Data, keys and the outbox live on one volume owned by nonroot (65532); a new named volume
# takes this folder's owner and mode.
COPY --from=build --chown=65532:65532 /out/var/lib/clef /var/lib/clef
WORKDIR /var/lib/clef
ENV CLEF_LISTEN=0.0.0.0:8080 \
    CLEF_DATABASE_URL=sqlite:///var/lib/clef/clef.db \
    CLEF_KEYS_DIR=/var/lib/clef/keys \
    CLEF_OUTBOX_DIR=/var/lib/clef/outbox \
    CLEF_LOG_FORMAT=json
VOLUME ["/var/lib/clef"]
EXPOSE 8080 9100
USER nonroot:nonroot
# On SIGTERM clef stops accepting, finishes requests in flight and flushes mail, all within
# CLEF_SHUTDOWN_GRACE (default 10 s), then exits 0. `docker stop` kills after 10 s: give it
# more (`--time 15`, compose `stop_grace_period: 15s`) or a shorter CLEF_SHUTDOWN_GRACE.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/clef"]
CMD ["serve"]
