// Command sigstorekeygen writes a sigstore key pair (PREFIX.key, encrypted
// with the passphrase, and PREFIX.pub) with containers/image's
// GenerateKeyPair, for test/bench/verify.sh: skopeo 1.9 cannot make one.
//
//	go run ./jobs/verify/internal/sigstorekeygen PREFIX PASSPHRASE
package main

import (
	"fmt"
	"os"

	"go.podman.io/image/v5/signature/sigstore"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: sigstorekeygen PREFIX PASSPHRASE")
		os.Exit(2)
	}
	kp, err := sigstore.GenerateKeyPair([]byte(os.Args[2]))
	if err == nil {
		err = os.WriteFile(os.Args[1]+".key", kp.PrivateKey, 0o600)
	}
	if err == nil {
		err = os.WriteFile(os.Args[1]+".pub", kp.PublicKey, 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sigstorekeygen:", err)
		os.Exit(1)
	}
}
