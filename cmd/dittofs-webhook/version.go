package main

import (
	"fmt"
	"io"
	"runtime"

	"github.com/dittofs/dittofs-webhook/webhook"
)

func version(stdout io.Writer) int {
	fmt.Fprintf(stdout, "dittofs-webhook %s %s %s/%s\n", webhook.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return 0
}
