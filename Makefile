# dittofs-webhook — see README.md. `make help` lists the targets. Every target
# runs on a machine with Go (and, for the image and the node, Debian's apt:
# `make setup`); the end-to-end control plane is built from Go modules.

SHELL       := /bin/bash
.DEFAULT_GOAL := all

# Settings (override on the command line: make run LISTEN=127.0.0.1:9444).

VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
VERSION     := $(VERSION)# expanded once: the image a run builds is the one its tests check
LDFLAGS     := -s -w -X github.com/dittofs/dittofs-webhook/webhook.Version=$(VERSION)
BIN         := bin/dittofs-webhook
CERTS       := .certs
LISTEN      ?= 127.0.0.1:9443
METRICS     ?= 127.0.0.1:8080
FUZZTIME    ?= 20s
SOAK        ?= 60s
IMAGE       ?= dittofs-webhook:$(VERSION)

# Tool versions. Each is written once: in the go.mod of the tools module that
# builds it (tests/tools/*/go.mod), read from there by the build scripts and
# here; helm and containerd (go install …@version) at the top of their build
# scripts; staticcheck, run with `go run`, on this line alone.
STATICCHECK_VERSION := v0.8.2
modversion = $(shell awk '($$1 == "require" && $$2 == "$(2)") {print $$3; exit} ($$1 == "$(2)" && $$2 ~ /^v/) {print $$2; exit}' $(1)/go.mod)
# The Kubernetes release of the e2e control plane: the one tests/tools/kube
# pins (the newest, which CI runs); an older one needs its own tools module,
# tests/tools/kube-1.MINOR (make e2e KUBE_VERSION=v1.30.14).
KUBE_VERSION ?= $(call modversion,tests/tools/kube,k8s.io/kubernetes)
export KUBE_VERSION

# Every Go module of the repository with code of its own to vet and lint (the
# tools modules that only pin a release hold a build-tagged tools.go: nothing
# to vet, and type-checking them would compile all of Kubernetes again).
MODULES := $(shell git ls-files -- go.mod '*/go.mod' | xargs -n1 dirname | while read -r d; do \
	git ls-files -- "$$d/*.go" | xargs -r grep -L '^//go:build tools' | grep -q . && echo "$$d"; done)

# podman and buildah read this instead of /etc/containers (runc, rlimits).
export CONTAINERS_CONF := $(CURDIR)/tests/tools/containers.conf

.PHONY: help all build run certs setup test vet lint unit race manifests e2e e2e-node e2e-certmanager \
	fuzz bench bench-e2e soak image kube-bins helm-bin clean

##@ General

help: ## this list
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2} \
		/^##@/ {printf "\n\033[1m%s\033[0m\n", substr($$0, 5)}' $(MAKEFILE_LIST)

##@ Develop

all: build ## the server binary (as build)

build: ## the server binary, static, as the image ships it
	CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/dittofs-webhook

certs: ## a development CA and serving certificate in .certs (reused when valid)
	go run ./certs/dev-certs -out $(CERTS)

run: build certs ## serve on localhost with the development certificates
	$(BIN) serve --listen $(LISTEN) --metrics-listen $(METRICS) \
		--tls-cert-file $(CERTS)/tls.crt --tls-key-file $(CERTS)/tls.key --log-format text

image: ## the image from the Dockerfile with podman (no daemon, no registry: local stand-ins for the bases), and bin/dittofs-webhook-image.tar
	VERSION=$(VERSION) IMAGE=$(IMAGE) tests/tools/image.sh

clean: ## remove the binary, the image archive and the development certificates
	rm -rf bin $(CERTS)

##@ Test

test: setup vet race manifests e2e e2e-node ## every test: vet, unit and fixtures (every fuzz corpus as ordinary tests) under -race, manifests, real-apiserver e2e, the node e2e

# The tests reach no registry: make image uses its offline stand-ins at once.
test e2e-node e2e-certmanager: export IMAGE_PULL := never

setup: ## install the Debian packages the tests need when missing (as root with apt; else name them)
	tests/tools/setup.sh

vet: ## go vet over every module
	@set -e; for m in $(MODULES); do echo "== go vet $$m"; (cd $$m && go vet ./...); done

lint: vet ## go vet and staticcheck over every module
	@set -e; for m in $(MODULES); do echo "== staticcheck $$m"; \
		(cd $$m && go run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...); done

unit: ## unit and fixture tests of the main module
	go test -count=1 ./...

race: ## unit and fixture tests under the race detector
	go test -count=1 -race ./...

manifests: helm-bin image ## the deploy/ kustomize tree and the Helm chart rendered and checked; the built image checked
	cd tests/manifests && IMAGE=$(IMAGE) go test -count=1 ./...

e2e: kube-bins build ## end-to-end on a real kube-apiserver, driven with kubectl
	cd tests/e2e && go test -count=1 -timeout 30m -v .

e2e-node: kube-bins image ## on a real node (containerd, kubelet, scheduler; root): deploy/default with cert-manager, the cache outliving the pod, rollouts under load
	tests/tools/build-certmanager.sh >/dev/null
	tests/tools/build-containerd.sh >/dev/null
	tests/tools/node-images.sh >/dev/null
	cd tests/e2e && IMAGE=$(IMAGE) go test -count=1 -timeout 30m -v ./node

e2e-certmanager: e2e-node ## the same suite (its cert-manager tests run on the node)

fuzz: ## every fuzz target for FUZZTIME each (FUZZTIME=10m make fuzz for a long run)
	@set -e; for pkg in $$(go list ./...); do \
		for t in $$(go test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "== $$pkg $$t"; go test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

soak: ## a SOAK-long run at a fixed rate: 0 errors, RSS and goroutines flat (figures in docs/reliability.md)
	DITTOFS_SOAK=$(SOAK) go test -count=1 -run 'TestSoak' -v -timeout 30m ./cmd/dittofs-webhook

##@ Benchmark

bench: ## Go micro-benchmarks, then dittofs-webhook vs controller-runtime vs a floor under load (~5 min; docs/performance.md)
	go test -run '^$$' -bench . -benchmem ./...
	cd tests/e2e && go test -count=1 ./bench/... && go run ./bench/cmd/loadbench

bench-e2e: kube-bins ## latency the webhooks add to a StatefulSet create through a real kube-apiserver (~1.5 min)
	cd tests/e2e && go run ./bench/cmd/e2ebench

##@ Tools (built from Go modules, cached by version in .bin)

kube-bins: ## kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kubectl (KUBE_VERSION) and etcd
	tests/tools/build.sh >/dev/null

helm-bin: ## the helm CLI (v4)
	tests/tools/build-helm.sh >/dev/null
