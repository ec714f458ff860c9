package control

import "testing"

func TestAccess(t *testing.T) {
	cases := []struct {
		a        Access
		uid      int
		mutating bool
		want     bool
	}{
		{Access{UID: 1000}, 1000, true, true},
		{Access{UID: 1000}, 1000, false, true},
		{Access{UID: 1000}, 1001, false, false},
		{Access{UID: 1000}, 0, false, false}, // user mode: only the same uid
		{Access{System: true}, 0, true, true},
		{Access{System: true}, 1000, false, true},
		{Access{System: true}, 1000, true, false},
	}
	for _, c := range cases {
		if got := c.a.allows(c.uid, c.mutating); got != c.want {
			t.Errorf("%+v.allows(%d, %v) = %v, want %v", c.a, c.uid, c.mutating, got, c.want)
		}
	}
}
