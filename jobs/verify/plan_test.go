package verify

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"go.podman.io/image/v5/signature"
	storage "go.podman.io/storage"

	"github.com/stowage/stowage/jobs/shared/report"
	"github.com/stowage/stowage/policy"
)

func TestClassify(t *testing.T) {
	rej := signature.PolicyRequirementError("A signature was required, but no signature exists")
	tests := []struct {
		name    string
		allowed bool
		err     error
		rules   []string
		signed  bool
		want    Status
		reason  string
	}{
		{"signed by", true, nil, []string{RuleSignedBy}, true, StatusAccepted, "signedBy"},
		{"sigstore", true, nil, []string{RuleSigstoreSigned}, true, StatusAccepted, "sigstoreSigned"},
		{"insecure", true, nil, []string{RuleInsecureAcceptAnything}, false, StatusAccepted, "insecureAcceptAnything"},
		{"no signatures", false, rej, []string{RuleSignedBy}, false, StatusUnsigned, string(rej)},
		{"bad signature", false, rej, []string{RuleSignedBy}, true, StatusRejected, string(rej)},
		{"reject rule", false, signature.PolicyRequirementError("Running image x is rejected by policy."), []string{RuleReject}, false, StatusRejected, "Running image x is rejected by policy."},
		{"wrapped rejection", false, errors.Join(rej), []string{RuleSigstoreSigned}, false, StatusUnsigned, string(rej)},
		{"untrusted key", false, signature.InvalidSignatureError{}, []string{RuleSignedBy}, true, StatusRejected, ""},
		{"other error", false, errors.New("open key: no such file"), []string{RuleSignedBy}, true, StatusError, "open key: no such file"},
		{"denied without error", false, nil, []string{RuleSignedBy}, true, StatusError, "policy denied without a reason"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, reason := Classify(tt.allowed, tt.err, tt.rules, tt.signed)
			if got != tt.want || reason != tt.reason {
				t.Errorf("Classify = %s %q, want %s %q", got, reason, tt.want, tt.reason)
			}
		})
	}
}

func TestCompare(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := t0.Add(24 * time.Hour)
	prev := map[string]Record{
		"r/still-bad:1": {Status: StatusRejected, ImageID: "i1", Since: t0},
		"r/fixed:1":     {Status: StatusUnsigned, ImageID: "i2", Since: t0},
		"r/broke:1":     {Status: StatusAccepted, ImageID: "i3", Since: t0},
		"r/flaky:1":     {Status: StatusRejected, ImageID: "i4", Since: t0},
		"r/gone:1":      {Status: StatusRejected, ImageID: "i9", Since: t0},
		"r/kind:1":      {Status: StatusRejected, ImageID: "i7", Since: t0},
	}
	results := []Result{
		{ImageID: "i1", Reference: "r/still-bad:1", Status: StatusRejected},
		{ImageID: "i2", Reference: "r/fixed:1", Status: StatusAccepted, Reason: "signedBy"},
		{ImageID: "i3", Reference: "r/broke:1", Status: StatusRejected},
		{ImageID: "i4", Reference: "r/flaky:1", Status: StatusError},
		{ImageID: "i5", Reference: "r/new-bad:1", Status: StatusUnsigned},
		{ImageID: "i6", Reference: "r/new-good:1", Status: StatusAccepted},
		{ImageID: "i7", Reference: "r/kind:1", Status: StatusUnsigned},
	}
	out, next, events := Compare(prev, results, now)

	wantChanged := map[string]bool{
		"r/still-bad:1": false, "r/fixed:1": true, "r/broke:1": true, "r/flaky:1": true,
		"r/new-bad:1": true, "r/new-good:1": false, "r/kind:1": true,
	}
	for _, r := range out {
		if r.Changed != wantChanged[r.Reference] {
			t.Errorf("%s: changed = %v, want %v", r.Reference, r.Changed, wantChanged[r.Reference])
		}
	}
	var got []string
	for _, e := range events {
		got = append(got, e.Kind+" "+e.Reference)
	}
	want := []string{
		report.EventSignatureRejected + " r/broke:1",
		report.EventSignatureRecovered + " r/fixed:1",
		report.EventSignatureRejected + " r/new-bad:1",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("events = %q, want %q", got, want)
	}
	if _, ok := next["r/gone:1"]; ok {
		t.Error("a name no longer in the store was kept")
	}
	if next["r/flaky:1"] != prev["r/flaky:1"] {
		t.Errorf("an error overwrote the previous verdict: %+v", next["r/flaky:1"])
	}
	if !next["r/still-bad:1"].Since.Equal(t0) || !next["r/broke:1"].Since.Equal(now) {
		t.Errorf("since not kept/updated: %+v %+v", next["r/still-bad:1"], next["r/broke:1"])
	}
}

func TestPlan(t *testing.T) {
	res := func(id, ref string, s Status) Result { return Result{ImageID: id, Reference: ref, Status: s} }
	results := []Result{
		res("a", "bad/a:1", StatusRejected), res("a", "good/a:1", StatusAccepted), // one name passes
		res("b", "bad/b:1", StatusUnsigned), res("b", "bad/b:2", StatusRejected), // container
		res("c", "bad/c:1", StatusRejected),                                   // removable
		res("d", "bad/d:1", StatusRejected), res("d", "err/d:1", StatusError), // uncertain
		res("e", "good/e:1", StatusAccepted), // nothing to do
		res("f", "bad/f:1", StatusRejected),  // read-only store
		res("g", "bad/g:1", StatusRejected),  // gained a name after the check
	}
	images := []ImageInfo{
		{ID: "a", Names: []string{"bad/a:1", "good/a:1"}},
		{ID: "b", Names: []string{"bad/b:1", "bad/b:2"}, Containers: []string{"ctr1"}},
		{ID: "c", Names: []string{"bad/c:1"}},
		{ID: "d", Names: []string{"bad/d:1", "err/d:1"}},
		{ID: "e", Names: []string{"good/e:1"}},
		{ID: "f", Names: []string{"bad/f:1"}, ReadOnly: true},
		{ID: "g", Names: []string{"bad/g:1", "new/g:1"}},
	}
	type row struct {
		Kind    ActionKind
		ID      string
		Names   []string
		Skipped bool
	}
	tests := []struct {
		mode policy.VerifyMode
		want []row
	}{
		{policy.VerifyReport, nil},
		{policy.VerifyOff, nil},
		{policy.VerifyUntag, []row{
			{ActionUntag, "a", []string{"bad/a:1"}, false},
			{ActionUntag, "b", []string{"bad/b:1", "bad/b:2"}, false},
			{ActionRemove, "c", []string{"bad/c:1"}, false},
			{ActionUntag, "d", []string{"bad/d:1"}, false},
			{ActionUntag, "f", []string{"bad/f:1"}, true},
			{ActionUntag, "g", []string{"bad/g:1"}, false},
		}},
		{policy.VerifyRemove, []row{
			{ActionRemove, "a", []string{"bad/a:1"}, true},
			{ActionRemove, "b", []string{"bad/b:1", "bad/b:2"}, true},
			{ActionRemove, "c", []string{"bad/c:1"}, false},
			{ActionRemove, "d", []string{"bad/d:1"}, true},
			{ActionRemove, "f", []string{"bad/f:1"}, true},
			{ActionRemove, "g", []string{"bad/g:1"}, true},
		}},
	}
	for _, tt := range tests {
		t.Run(string(tt.mode), func(t *testing.T) {
			var got []row
			for _, a := range Plan(tt.mode, images, results) {
				got = append(got, row{a.Kind, a.ImageID, a.Names, a.Skipped})
				if a.Reason == "" {
					t.Errorf("%s %s: no reason", a.Kind, a.ImageID)
				}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Plan(%s) =\n%+v\nwant\n%+v", tt.mode, got, tt.want)
			}
		})
	}
}

func TestLayerImages(t *testing.T) {
	layers := []storage.Layer{{ID: "base"}, {ID: "mid", Parent: "base"}, {ID: "top", Parent: "mid"}, {ID: "other"}, {ID: "mapped", Parent: "base"}}
	images := []storage.Image{
		{ID: "i2", TopLayer: "top"},
		{ID: "i1", TopLayer: "mid", MappedTopLayers: []string{"mapped"}},
		{ID: "i3", TopLayer: "other"},
	}
	got := LayerImages(images, layers)
	want := map[string][]string{
		"base": {"i1", "i2"}, "mid": {"i1", "i2"}, "top": {"i2"}, "other": {"i3"}, "mapped": {"i1"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("LayerImages = %v, want %v", got, want)
	}
}
