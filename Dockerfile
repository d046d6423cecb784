# Certgate's container image. Two stages, and a third target for a prebuilt binary:
#   build:   the official Swift toolchain image on Debian 12 (swift:6.3-bookworm), which builds
#            a release binary with the Swift runtime linked in statically (scripts/build-release,
#            the same build the benchmarks measure);
#   runtime: debian:bookworm-slim with only what that binary loads at run time (OpenSSL,
#            nghttp2 and libyaml are linked in from their -dev packages' archives; libssl3
#            stays for the legacy provider an RC2 keystore loads and for openssl.cnf;
#            libstdc++ for a build that found no static archive of it) and
#            ca-certificates, run as an unprivileged user.
#   prebuilt: the runtime stage with a binary from the context (scripts/image, where no
#            registry serves the Swift image).
# Build: docker build -t certgate:dev .   (the chart's image.repository/image.tag point at it)
ARG SWIFT_IMAGE=swift:6.3-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${SWIFT_IMAGE} AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libssl-dev libnghttp2-dev libyaml-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, so source edits reuse the resolved packages layer.
COPY Package.swift ./
RUN swift package resolve
# SwiftPM checks every declared target's folder, so the tests come along (they are not built).
COPY Sources ./Sources
COPY Tests ./Tests
COPY scripts/build-release scripts/certgate.link-order ./scripts/
# The runtime stage installs no libyaml or nghttp2: refuse a binary that would need them
# (build-release links the shared ones where their static archives are missing).
RUN install -D -m 0755 "$(scripts/build-release)" /out/certgate \
 && if readelf -d /out/certgate | grep -E 'NEEDED.*lib(yaml|nghttp2)'; then \
      echo "certgate links libyaml or nghttp2 dynamically; install their -dev packages' static archives" >&2; exit 1; fi

FROM ${RUNTIME_IMAGE} AS runtime
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libssl3 libstdc++6 ca-certificates \
 && apt-get clean && rm -rf /var/lib/apt/lists/*
# The same numeric user the chart's securityContext runs as (runAsNonRoot needs a number).
USER 65532:65532
EXPOSE 8443 9090
ENTRYPOINT ["/usr/local/bin/certgate"]
CMD ["serve"]

# The runtime stage with a binary built outside, from a context holding only that binary:
# scripts/image builds this target where no registry serves the Swift image.
FROM runtime AS prebuilt
COPY --chmod=0755 certgate /usr/local/bin/certgate

# The default target: the binary of the build stage.
FROM runtime
COPY --from=build /out/certgate /usr/local/bin/certgate
