# syntax=docker/dockerfile:1

# The dittofs-webhook image: one static binary on distroless, non-root.
#
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) \
#     -t ghcr.io/dittofs/dittofs-webhook:dev .
#   docker buildx build --platform linux/amd64,linux/arm64 ...   # multi-arch
#
# tests/manifests builds the binary with this file's `go build` line and checks
# it is static, so change the flags here, not there.

ARG GO_VERSION=1.26

# The builder runs on the build machine's own platform and cross-compiles
# (pure Go), so multi-arch builds need no emulation.
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
ARG TARGETOS
ARG TARGETARCH
WORKDIR /src

# Modules first: this layer is reused until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download

COPY . .
ARG VERSION=dev
# CGO_ENABLED=0: a static binary, the only kind distroless/static can run.
# -trimpath: no build-machine paths in the binary (reproducible builds).
# -s -w: no symbol table or DWARF: a smaller image.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath \
      -ldflags "-s -w -X github.com/dittofs/dittofs-webhook/webhook.Version=${VERSION}" \
      -o /out/dittofs-webhook ./cmd/dittofs-webhook

# static: CA certificates, tzdata and /etc/passwd, no shell, no libc.
# :nonroot runs as 65532:65532 by default.
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="dittofs-webhook" \
      org.opencontainers.image.description="Admission webhook that keeps DittoFS StatefulSets' data safe" \
      org.opencontainers.image.source="https://github.com/dittofs/dittofs-webhook" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/dittofs-webhook /dittofs-webhook
# Numeric, so that Kubernetes' runAsNonRoot can verify it without /etc/passwd.
USER 65532:65532
# 9443: admission (HTTPS); 8080: /metrics, /healthz, /readyz (HTTP).
EXPOSE 9443 8080
ENTRYPOINT ["/dittofs-webhook"]
CMD ["serve"]
