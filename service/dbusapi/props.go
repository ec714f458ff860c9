package dbusapi

import (
	"reflect"

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

func propMap(st Status) map[string]*prop.Prop {
	m := make(map[string]*prop.Prop)
	for name, v := range propValues(st) {
		emit := prop.EmitTrue
		if name == "Version" {
			emit = prop.EmitConst
		}
		m[name] = &prop.Prop{Value: v, Writable: false, Emit: emit}
	}
	return m
}

func equalValue(a, b any) bool { return reflect.DeepEqual(a, b) }

func arg(name, typ, dir string) introspect.Arg {
	return introspect.Arg{Name: name, Type: typ, Direction: dir}
}

// jobsSig is the signature of ListJobs and the Jobs property.
const jobsSig = "a(sstsstb)"

func managerIntrospection(props []introspect.Property) introspect.Interface {
	return introspect.Interface{
		Name:       Interface,
		Properties: props,
		Methods: []introspect.Method{
			{Name: "ListJobs", Args: []introspect.Arg{arg("jobs", jobsSig, "out")}},
			{Name: "RunJob", Args: []introspect.Arg{
				arg("job", "s", "in"), arg("dry_run", "b", "in"), arg("run_id", "s", "out")}},
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
		},
	}
}
