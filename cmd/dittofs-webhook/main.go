// Command dittofs-webhook is the DittoFS StatefulSet admission-webhook server.
//
//	dittofs-webhook serve    serve the mutating and validating webhooks
//	dittofs-webhook eval     run the same mutation and validation offline
//	dittofs-webhook audit    judge the StatefulSets already stored
//	dittofs-webhook version  print the version
package main

import (
	"fmt"
	"io"
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

const usage = `dittofs-webhook keeps DittoFS StatefulSets' data safe: admission webhooks that
give every StatefulSet labelled dittofs.com/server a persistent cache and the
Retain/Retain PVC retention policy, and reject any without its storage.

Usage:
  dittofs-webhook serve [flags]     serve the webhooks (see serve -h)
  dittofs-webhook eval [flags]      mutate and validate manifests offline (see eval -h)
  dittofs-webhook audit [flags]     judge the StatefulSets already stored (see audit -h)
  dittofs-webhook version           print the version
`

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stderr)
	case "eval":
		return eval(args[1:], stdin, stdout, stderr)
	case "audit":
		return audit(args[1:], stdin, stdout, stderr)
	case "version":
		return version(stdout)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "dittofs-webhook: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}
