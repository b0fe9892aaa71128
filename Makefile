# dittofs-webhook — see README.md. Every target runs on a machine with only Go:
# the control-plane binaries of the end-to-end tests are built from Go modules.

SHELL       := /bin/bash
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS     := -s -w -X github.com/dittofs/dittofs-webhook/webhook.Version=$(VERSION)
BIN         := bin/dittofs-webhook
CERTS       := .certs
LISTEN      ?= 127.0.0.1:9443
METRICS     ?= 127.0.0.1:8080
FUZZTIME    ?= 20s
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
IMAGE       ?= dittofs-webhook:$(VERSION)
# The Kubernetes release of the e2e control plane: the newest by default (CI);
# an older one needs its tools module, tests/tools/kube-1.MINOR.
KUBE_VERSION ?= v1.37.2
export KUBE_VERSION

.PHONY: all build run certs setup test unit race fixtures manifests e2e e2e-certmanager e2e-node fuzz bench bench-e2e soak lint vet image kube-bins helm-bin clean

all: build

build: ## the server binary, static, as the image ships it
	CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/dittofs-webhook

certs: ## a development CA and serving certificate in .certs (reused when valid)
	go run ./certs/dev-certs -out $(CERTS)

run: build certs ## serve on localhost with the development certificates
	$(BIN) serve --listen $(LISTEN) --metrics-listen $(METRICS) \
		--tls-cert-file $(CERTS)/tls.crt --tls-key-file $(CERTS)/tls.key --log-format text

test: setup vet race manifests e2e e2e-node ## every test: unit, fixtures (and every fuzz corpus, as ordinary tests), race, manifests, real-apiserver e2e, the node e2e (cert-manager, the install on a kubelet)

# The tests reach no registry: make image uses its offline stand-ins at once.
test e2e-node e2e-certmanager: export IMAGE_PULL := never

setup: ## install the Debian packages the tests need when missing (as root with apt; else name them)
	tests/tools/setup.sh

vet:
	go vet ./...

unit: ## unit and fixture tests of the main module
	go test -count=1 ./...

race: ## unit and fixture tests under the race detector
	go test -count=1 -race ./...

# podman and buildah read this instead of /etc/containers (runc, rlimits).
export CONTAINERS_CONF := $(CURDIR)/tests/tools/containers.conf

manifests: helm-bin image ## the deploy/ kustomize tree and the Helm chart rendered and checked; the built image checked
	cd tests/manifests && IMAGE=$(IMAGE) go test -count=1 ./...

helm-bin: ## the helm CLI (v4) built from Go modules (cached by version)
	tests/tools/build-helm.sh >/dev/null

e2e: kube-bins build ## end-to-end on a real kube-apiserver, driven with kubectl
	cd tests/e2e && go test -count=1 -timeout 30m -v ./...

e2e-node: kube-bins image ## on a real node (containerd, kubelet, scheduler; root): deploy/default with cert-manager, the cache outliving the pod, rollouts under load
	tests/tools/build-certmanager.sh >/dev/null
	tests/tools/build-containerd.sh >/dev/null
	tests/tools/node-images.sh >/dev/null
	cd tests/e2e/certmanager && IMAGE=$(IMAGE) go test -count=1 -timeout 30m -v ./...

e2e-certmanager: e2e-node ## the same suite (its cert-manager tests run on the node)

kube-bins: ## kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kubectl (KUBE_VERSION) and etcd built from Go modules (cached by version)
	tests/tools/build.sh >/dev/null

fuzz: ## every fuzz target for FUZZTIME each (FUZZTIME=10m make fuzz for a long run)
	@set -e; for pkg in $$(go list ./...); do \
		for t in $$(go test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "== $$pkg $$t"; go test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

bench: ## Go micro-benchmarks, then dittofs-webhook vs controller-runtime vs a floor under load (~9 min; docs/performance.md)
	go test -run '^$$' -bench . -benchmem ./...
	cd tests/bench && go test -count=1 ./... && go run ./cmd/loadbench

bench-e2e: kube-bins ## latency the webhooks add to a StatefulSet create through a real kube-apiserver (~1.5 min)
	cd tests/bench && go run ./cmd/e2ebench

SOAK ?= 60s
soak: ## a SOAK-long run at a fixed rate: 0 errors, RSS and goroutines flat (figures in docs/reliability.md)
	DITTOFS_SOAK=$(SOAK) go test -count=1 -run 'TestSoak' -v -timeout 30m ./cmd/dittofs-webhook

lint: vet ## go vet and staticcheck
	go run $(STATICCHECK) ./...

image: ## the image from the Dockerfile with podman (no daemon, no registry: local stand-ins for the bases), and bin/dittofs-webhook-image.tar
	VERSION=$(VERSION) IMAGE=$(IMAGE) tests/tools/image.sh

clean:
	rm -rf bin $(CERTS)
