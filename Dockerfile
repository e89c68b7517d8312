# shadowtee image: build on debian:12 exactly as CI does, run on debian:12-slim.
#   docker build -t ghcr.io/shadowtee/shadowtee:0.1.0 .
# The runtime package list must equal what build/shadowtee links
# (tests/integration/test_k8s.py compares `ldd` + `dpkg -S` with it).

FROM debian:12 AS build
WORKDIR /src
# deps.sh is the one list of build packages (also used by CI and `make demo`).
COPY scripts/deps.sh scripts/deps.sh
RUN bash scripts/deps.sh --no-browser && rm -rf /var/lib/apt/lists/*
COPY . .
# CI runs `make check` (build + unit + integration on loopback); so does the
# image build by default. --build-arg MAKE_TARGET=all for a quick build.
ARG MAKE_TARGET=check
RUN make clean && make -j"$(nproc)" all && make "$MAKE_TARGET" \
 && strip build/shadowtee build/shadowtee-report

FROM debian:12-slim AS runtime
# Exactly the libraries the two binaries link (plus CA certificates, the
# system store TLS upstreams are verified against); tests/integration/test_k8s.py
# compares this list with what `ldd` reports.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libuv1 libhiredis0.14 libjansson4 libssl3 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 shadowtee \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin shadowtee
COPY --from=build /src/build/shadowtee /src/build/shadowtee-report /usr/local/bin/
USER 10001:10001
EXPOSE 8080 9901
ENTRYPOINT ["shadowtee"]
