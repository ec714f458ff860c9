package daemon

import (
	"os"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TestDamagedStateDaemonStartsAndSays (issue 12 item 6): with a truncated
// state database the daemon used to panic at start ("assertion failed: Page
// expected to be ...") or die of SIGBUS. It now starts, and status names
// the file, what is wrong and the way out.
func TestDamagedStateDaemonStartsAndSays(t *testing.T) {
	var path string
	h := start(t, shWorker(reportScript), basePolicy, func(o *Options) {
		path = o.State.Path()
		if err := o.State.Update("seed", func(b *bolt.Bucket) error {
			for i := range 3000 {
				if err := b.Put([]byte(strings.Repeat("k", 30)+string(rune(i+1))), []byte(strings.Repeat("v", 200))); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(path, int64(os.Getpagesize())*5); err != nil {
			t.Fatal(err)
		}
	})
	st, err := h.c.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(st.StateError, path) || !strings.Contains(st.StateError, "mv "+path+" "+path+".bad") {
		t.Fatalf("status state error %q does not name %s and the way out", st.StateError, path)
	}
	if !strings.Contains(h.d.statusLine(), "state database unusable") {
		t.Errorf("status line %q does not mention the state database", h.d.statusLine())
	}
}
