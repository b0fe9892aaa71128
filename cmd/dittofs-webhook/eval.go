package main

import (
	"fmt"
	"io"
)

func eval(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "eval: not implemented yet")
	return 2
}
