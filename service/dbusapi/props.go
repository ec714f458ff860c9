package dbusapi

import (
	"maps"
	"reflect"
	"slices"

	"github.com/godbus/dbus/v5"

	"github.com/godbus/dbus/v5/introspect"
	"github.com/godbus/dbus/v5/prop"
)

// propValues is the D-Bus value of every property for a status.
func propValues(st Status) map[string]any {
	jobs := make([]JobEntry, 0, len(st.Jobs))
	for _, j := range st.Jobs {
		jobs = append(jobs, j.Entry())
	}
	return map[string]any{
		"Version":           st.Version,
		"Mode":              st.Mode,
		"State":             st.State,
		"PolicyPath":        st.PolicyPath,
		"PolicyError":       st.PolicyError,
		"StorageUsedBytes":  st.StorageUsedBytes,
		"StorageLimitBytes": st.StorageLimitBytes,
		"Jobs":              jobs,
	}
}

// propMap holds the values for prop's Get/GetAll. Server.Update emits
// PropertiesChanged itself (one signal per update, and prop's own emit
// panics when the bus is gone), so prop never emits.
func propMap(st Status) map[string]*prop.Prop {
	m := make(map[string]*prop.Prop)
	for name, v := range propValues(st) {
		m[name] = &prop.Prop{Value: v, Writable: false, Emit: prop.EmitFalse}
	}
	return m
}

// propIntrospection describes the properties: read-only, emitting
// PropertiesChanged with the value, except the constant Version.
func propIntrospection(st Status) []introspect.Property {
	vals := propValues(st)
	names := slices.Sorted(maps.Keys(vals))
	out := make([]introspect.Property, 0, len(names))
	for _, name := range names {
		emits := "true"
		if name == "Version" {
			emits = "const"
		}
		out = append(out, introspect.Property{
			Name: name, Type: dbus.SignatureOf(vals[name]).String(), Access: "read",
			Annotations: []introspect.Annotation{{Name: "org.freedesktop.DBus.Property.EmitsChangedSignal", Value: emits}},
		})
	}
	return out
}

func equalValue(a, b any) bool { return reflect.DeepEqual(a, b) }

func arg(name, typ, dir string) introspect.Arg {
	return introspect.Arg{Name: name, Type: typ, Direction: dir}
}

// jobsSig is the signature of ListJobs and the Jobs property.
const jobsSig = "a(sstsstb)"

func managerIntrospection(st Status) introspect.Interface {
	return introspect.Interface{
		Name:       Interface,
		Properties: propIntrospection(st),
		Methods: []introspect.Method{
			{Name: "ListJobs", Args: []introspect.Arg{arg("jobs", jobsSig, "out")}},
			{Name: "RunJob", Args: []introspect.Arg{
				arg("job", "s", "in"), arg("dry_run", "b", "in"), arg("run_id", "s", "out")}},
			{Name: "PullImage", Args: []introspect.Arg{arg("ref", "s", "in"), arg("run_id", "s", "out")}},
			{Name: "RecentRuns", Args: []introspect.Arg{arg("since_usec", "t", "in"), arg("runs", "a(sst)", "out")}},
			{Name: "GetReport", Args: []introspect.Arg{arg("run_id", "s", "in"), arg("json", "s", "out")}},
			{Name: "Reload"},
			{Name: "Pin", Args: []introspect.Arg{arg("ref", "s", "in")}},
			{Name: "Unpin", Args: []introspect.Arg{arg("ref", "s", "in")}},
		},
		Signals: []introspect.Signal{
			{Name: "JobStarted", Args: []introspect.Arg{
				arg("job", "s", ""), arg("run_id", "s", ""), arg("dry_run", "b", "")}},
			{Name: "JobFinished", Args: []introspect.Arg{
				arg("job", "s", ""), arg("run_id", "s", ""), arg("outcome", "s", ""), arg("summary", "s", "")}},
			{Name: "DriftDetected", Args: []introspect.Arg{
				arg("run_id", "s", ""), arg("image", "s", ""), arg("reference", "s", ""),
				arg("digest", "s", ""), arg("message", "s", "")}},
			{Name: "SignatureRejected", Args: []introspect.Arg{
				arg("run_id", "s", ""), arg("image", "s", ""), arg("reference", "s", ""), arg("message", "s", "")}},
			{Name: "QuotaExceeded", Args: []introspect.Arg{
				arg("run_id", "s", ""), arg("bytes", "t", ""), arg("message", "s", "")}},
			{Name: "NewerVersion", Args: []introspect.Arg{
				arg("run_id", "s", ""), arg("image", "s", ""), arg("reference", "s", ""),
				arg("newer", "s", ""), arg("message", "s", "")}},
		},
	}
}
