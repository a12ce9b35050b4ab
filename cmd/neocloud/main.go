// Command neocloud is the one binary of the neocloud control plane: the
// server, the client verbs, the node agent and the demo. Run `neocloud
// --help`.
package main

import (
	"os"

	"github.com/neocloud/neocloud/cli"
	"github.com/neocloud/neocloud/demo"
)

func init() { cli.Register(demo.Command) }

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
