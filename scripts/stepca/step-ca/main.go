// Command step-ca is a minimal main for smallstep's step-ca, built from Debian's
// golang-github-smallstep-certificates-dev (Debian ships the library, not cmd/step-ca).
// Like upstream's cmd/step-ca it runs commands.AppCommand with the top-level arguments:
//
//	step-ca <ca.json> [--password-file FILE] ...
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/smallstep/certificates/commands"
	"github.com/urfave/cli"
	"go.step.sm/cli-utils/step"

	// Certificate authority services: the local one (keys on disk) and step (RA mode).
	_ "github.com/smallstep/certificates/cas/softcas"
	_ "github.com/smallstep/certificates/cas/stepcas"
)

func main() {
	step.Set("Smallstep CA (nexa test build)", "0.19.0-debian", "unknown")

	app := cli.NewApp()
	app.Name = "step-ca"
	app.HelpName = "step-ca"
	app.Usage = "an online certificate authority"
	app.UsageText = commands.AppCommand.UsageText
	app.Version = step.Version()
	app.Flags = append(app.Flags, commands.AppCommand.Flags...)
	app.Action = func(_ *cli.Context) error {
		// Run the top-level action as the "start" command, as upstream does.
		set := flag.NewFlagSet(app.Name, flag.ContinueOnError)
		if err := set.Parse(os.Args); err != nil {
			return err
		}
		return commands.AppCommand.Run(cli.NewContext(app, set, nil))
	}
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
