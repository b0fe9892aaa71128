# syntax=docker/dockerfile:1

# The dittofs-webhook image: one static binary on distroless, non-root.
#
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) \
#     -t ghcr.io/dittofs/dittofs-webhook:dev .
#   docker buildx build --platform linux/amd64,linux/arm64 ...   # multi-arch
#
# tests/manifests checks the binary of the built image (static, CGO_ENABLED=0,
# -trimpath, -s -w, the version stamp), and from this file only what the image
# cannot tell: the base images' defaults and the go build's cache mounts.

ARG GO_VERSION=1.26
# The base images are build args. The defaults are the public images; `make
# image` builds local stand-ins when they cannot be pulled (no registry on the
# project's machines; README "The image"). Pin them by digest when you build
# with a registry, e.g. --build-arg BASE_IMAGE=gcr.io/distroless/static-debian12:nonroot@sha256:...
# (no digest is written here: none could be verified offline).
ARG BUILDER_IMAGE=golang:${GO_VERSION}
ARG BASE_IMAGE=gcr.io/distroless/static-debian12:nonroot

# The builder runs on the build machine's own platform and cross-compiles
# (pure Go), so multi-arch builds need no emulation.
FROM --platform=$BUILDPLATFORM ${BUILDER_IMAGE} AS build
ARG TARGETOS
ARG TARGETARCH
# GOPROXY may point at a module cache mounted into the build (make image:
# file:///gomodcache/cache/download, read only): no network needed.
ARG GOPROXY=https://proxy.golang.org,direct
ENV GOPROXY=${GOPROXY}
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
FROM ${BASE_IMAGE}
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
