module github.com/dittofs/dittofs-webhook/tests/e2ekit

go 1.26.0
