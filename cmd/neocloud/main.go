// Command neocloud is the one binary of the neocloud control plane: the
// server and the client verbs. Run `neocloud --help`.
package main

import (
	"os"

	"github.com/neocloud/neocloud/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
