// Command dev-certs writes a development CA and a serving certificate for
// dittofs-webhook, for `make run` and the tests, where there is no
// cert-manager:
//
//	go run ./certs/dev-certs [-out .certs] [-host NAME]... [-validity 8760h]
//
// It is idempotent: an existing CA in the output directory is reused, so a
// client that trusts its ca.crt keeps working, and a serving certificate that
// is still good for every host is left alone. It prints the paths of the four
// files, one per line.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/dittofs/dittofs-webhook/certs"
)

// hostList is a repeatable -host flag.
type hostList []string

func (h *hostList) String() string { return strings.Join(*h, ",") }

func (h *hostList) Set(v string) error {
	if v == "" {
		return fmt.Errorf("empty host")
	}
	*h = append(*h, v)
	return nil
}

func main() {
	var extra hostList
	out := flag.String("out", certs.DefaultDir, "directory to write ca.crt, ca.key, tls.crt and tls.key into")
	flag.Var(&extra, "host", "extra DNS name or IP address for the serving certificate, added to the defaults (repeatable)")
	validity := flag.Duration("validity", certs.DefaultValidity, "lifetime of the serving certificate (a new CA lives twice as long)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: dev-certs [-out DIR] [-host NAME]... [-validity DURATION]\n\n"+
			"Writes a development CA and a serving certificate. Default hosts: %s\n\n",
			strings.Join(certs.DefaultHosts(), ", "))
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	if *validity <= 0 {
		fmt.Fprintln(os.Stderr, "dev-certs: -validity must be positive")
		os.Exit(2)
	}

	opts := certs.Options{
		Dir:      *out,
		Hosts:    append(certs.DefaultHosts(), extra...),
		Validity: *validity,
	}
	if err := certs.Write(opts); err != nil {
		fmt.Fprintln(os.Stderr, "dev-certs:", err)
		os.Exit(1)
	}
	for _, name := range []string{certs.CACertFile, certs.CAKeyFile, certs.CertFile, certs.KeyFile} {
		fmt.Println(filepath.Join(*out, name))
	}
}
