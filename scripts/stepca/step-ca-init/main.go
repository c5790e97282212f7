// Command step-ca-init initializes a step-ca PKI offline, with the same library calls as
// `step ca init` (which Debian cannot build): a root and an intermediate CA (P-256, keys
// encrypted with the password), a password-protected JWK provisioner and ca.json, all under
// $STEPPATH. It prints the root fingerprint (hex SHA-256 of the root's DER) on stdout.
//
//	STEPPATH=DIR step-ca-init --name NAME --provisioner NAME --address HOST:PORT \
//	    --dns 127.0.0.1,localhost --password-file FILE [--no-db]
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"strings"
	"unicode"

	"github.com/smallstep/certificates/authority/config"
	"github.com/smallstep/certificates/cas/apiv1"
	"github.com/smallstep/certificates/pki"

	_ "github.com/smallstep/certificates/cas/softcas"
)

func main() {
	name := flag.String("name", "Nexa Test", "the PKI name (root and intermediate CN prefix, organization)")
	provisioner := flag.String("provisioner", "iot-bridge", "the JWK provisioner's name")
	address := flag.String("address", "127.0.0.1:9000", "the address step-ca listens on")
	dns := flag.String("dns", "127.0.0.1,localhost", "comma-separated DNS names and IPs of the CA")
	passwordFile := flag.String("password-file", "", "file with the password for the CA keys and the provisioner key")
	noDB := flag.Bool("no-db", false, "configure no database (no replay protection across restarts, no revocation)")
	flag.Parse()

	if os.Getenv("STEPPATH") == "" {
		fail("STEPPATH must name the directory to initialize")
	}
	if *passwordFile == "" {
		fail("--password-file is required")
	}
	raw, err := os.ReadFile(*passwordFile)
	if err != nil {
		fail(err.Error())
	}
	// step-ca trims its password file the same way.
	pass := bytes.TrimRightFunc(raw, unicode.IsSpace)
	if len(pass) == 0 {
		fail("the password file is empty")
	}
	var names []string
	for _, n := range strings.Split(*dns, ",") {
		if n = strings.TrimSpace(n); n != "" {
			names = append(names, n)
		}
	}

	p, err := pki.New(apiv1.Options{Type: apiv1.SoftCAS, IsCreator: true},
		pki.WithAddress(*address),
		pki.WithDNSNames(names),
		pki.WithProvisioner(*provisioner),
	)
	check(err)
	check(p.GenerateKeyPairs(pass))
	resource := strings.ReplaceAll(*name, " ", "-")
	root, err := p.GenerateRootCertificate(*name, *name, resource, pass)
	check(err)
	check(p.GenerateIntermediateCertificate(*name, *name, resource, root, pass))

	var opts []pki.ConfigOption
	if *noDB {
		// pki.WithNoDB() has no effect in 0.19; drop the database from the config instead.
		opts = append(opts, func(c *config.Config) error {
			c.DB = nil
			return nil
		})
	}
	check(p.Save(opts...))
	fmt.Println(p.GetRootFingerprint())
}

func check(err error) {
	if err != nil {
		fail(err.Error())
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "step-ca-init:", msg)
	os.Exit(1)
}
