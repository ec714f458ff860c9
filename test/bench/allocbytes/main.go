// Command allocbytes prints the bytes the files under each argument take on
// the filesystem (allocated blocks, each inode once, one filesystem), one
// line per argument: "BYTES PATH". The benchmarks use it as their truth in
// place of du, whose directory sizes depend on the coreutils version.
package main

import (
	"fmt"
	"os"

	"github.com/stowage/stowage/test/testenv"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: allocbytes DIR...")
		os.Exit(2)
	}
	for _, dir := range os.Args[1:] {
		n, err := testenv.AllocatedBytes(dir)
		if err != nil {
			fmt.Fprintln(os.Stderr, "allocbytes:", err)
			os.Exit(1)
		}
		fmt.Printf("%d %s\n", n, dir)
	}
}
