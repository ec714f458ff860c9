package imageref

import "testing"

func TestIsIDPrefix(t *testing.T) {
	for s, want := range map[string]bool{
		"0123456789ab": true,
		"0123456789a":  false, // too short
		"0123456789AB": false, // podman IDs are lowercase
		"0123456789ag": false,
		"e7d92cdc71feacf90708cb59182d0df1b911f8ae022d29e8e95d75ca6a99776a":  true,
		"e7d92cdc71feacf90708cb59182d0df1b911f8ae022d29e8e95d75ca6a99776a0": false,
		"alpine:3.19": false,
	} {
		if got := IsIDPrefix(s); got != want {
			t.Errorf("IsIDPrefix(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestNormalize(t *testing.T) {
	for in, want := range map[string]string{
		"alpine":                           "docker.io/library/alpine:latest",
		"alpine:3.19":                      "docker.io/library/alpine:3.19",
		"user/app":                         "docker.io/user/app:latest",
		"quay.io/org/img:1":                "quay.io/org/img:1",
		"localhost/app":                    "localhost/app:latest",
		"localhost:5000/x@sha256:" + hex64: "localhost:5000/x@sha256:" + hex64,
	} {
		got, err := Normalize(in)
		if err != nil || got != want {
			t.Errorf("Normalize(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "Alpine", "a b", "alpine:"} {
		if got, err := Normalize(bad); err == nil {
			t.Errorf("Normalize(%q) = %q, want an error", bad, got)
		}
	}
}

func TestFamiliar(t *testing.T) {
	for in, want := range map[string]string{
		"docker.io/library/alpine:latest": "alpine:latest",
		"docker.io/user/app:1":            "user/app:1",
		"quay.io/org/img:1":               "quay.io/org/img:1",
		"localhost/app:latest":            "localhost/app:latest",
	} {
		if got, err := Familiar(in); err != nil || got != want {
			t.Errorf("Familiar(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := Familiar("Bad Ref"); err == nil {
		t.Error("Familiar accepted an invalid reference")
	}
}

const hex64 = "e7d92cdc71feacf90708cb59182d0df1b911f8ae022d29e8e95d75ca6a99776a"

func TestUnqualified(t *testing.T) {
	for ref, want := range map[string]bool{
		"alpine":              true,
		"library/alpine:3":    true,
		"user/app":            true,
		"docker.io/library/a": false,
		"localhost/app":       false,
		"localhost:5000/app":  false,
		"registry:5000/app":   false,
		"quay.io/org/img:1":   false,
	} {
		if got := Unqualified(ref); got != want {
			t.Errorf("Unqualified(%q) = %v, want %v", ref, got, want)
		}
	}
}

func TestRepository(t *testing.T) {
	for name, want := range map[string]string{
		"docker.io/library/a:1":         "docker.io/library/a",
		"localhost:5000/x/y:2":          "localhost:5000/x/y",
		"localhost:5000/x/y":            "localhost:5000/x/y",
		"quay.io/a/b@sha256:0123456789": "quay.io/a/b",
	} {
		if got := Repository(name); got != want {
			t.Errorf("Repository(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestMatchGlob(t *testing.T) {
	const alpine = "docker.io/library/alpine:3.19"
	for _, tc := range []struct {
		glob, ref string
		want      bool
	}{
		// The full normalized form, with and without the tag.
		{"docker.io/library/alpine:3.19", alpine, true},
		{"docker.io/library/alpine", alpine, true},
		{"docker.io/library/*", alpine, true},
		{"docker.io/library/alpine:3.*", alpine, true},
		{"docker.io/*", alpine, false}, // "*" does not cross "/"
		{"docker.io/library/alpine:3.18", alpine, false},
		// The familiar short form, with and without the tag.
		{"alpine", alpine, true},
		{"alpine:3.*", alpine, true},
		{"alpine:3.19", alpine, true},
		{"alpine:4*", alpine, false},
		{"alp*", alpine, true},
		{"*", alpine, true},
		{"library/alpine", alpine, false}, // not a form of the reference
		{"alpine", "docker.io/library/alpinex:1", false},
		{"busybox", "docker.io/library/alpine:1", false},
		{"*/*", "docker.io/user/app:1", true},
		{"user/app:1", "docker.io/user/app:1", true},
		// Other registries have no short form.
		{"quay.io/*/*", "quay.io/org/img:1", true},
		{"org/img", "quay.io/org/img:1", false},
		{"*", "quay.io/org/img:1", false},
		{"localhost/app", "localhost/app:latest", true},
		{"localhost:5000/*", "localhost:5000/app:2", true},
		// Digests.
		{"quay.io/org/img", "quay.io/org/img@sha256:" + hex64, true},
		{"alpine", "docker.io/library/alpine@sha256:" + hex64, true},
		// An unparsable name is matched as written.
		{"Weird*", "Weird:1", true},
		// A malformed glob matches nothing.
		{"[", alpine, false},
	} {
		if got := MatchGlob(tc.glob, tc.ref); got != tc.want {
			t.Errorf("MatchGlob(%q, %q) = %v, want %v", tc.glob, tc.ref, got, tc.want)
		}
	}
}
