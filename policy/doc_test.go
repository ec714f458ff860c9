package policy

import (
	"bytes"
	"sort"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// TestDocsCoverEverySchemaKey proves every key of the schema and of the
// default policy file is documented, with its default as written there.
func TestDocsCoverEverySchemaKey(t *testing.T) {
	secs, err := Docs()
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]KeyDoc{}
	for _, s := range secs {
		if s.Description == "" {
			t.Errorf("section %q: empty description", s.Name)
		}
		for _, k := range s.Keys {
			if strings.TrimSpace(k.Description) == "" {
				t.Errorf("key %s: empty description", k.Key)
			}
			if k.Type == "" {
				t.Errorf("key %s: empty type", k.Key)
			}
			if k.Section != s.Name {
				t.Errorf("key %s listed in section %q but says %q", k.Key, s.Name, k.Section)
			}
			documented[k.Key] = k
		}
	}

	// Every key in the shipped default file is documented, with that default.
	var raw map[string]any
	if _, err := toml.NewDecoder(bytes.NewReader(defaultTOML)).Decode(&raw); err != nil {
		t.Fatal(err)
	}
	var inFile []string
	var flatten func(prefix string, m map[string]any)
	flatten = func(prefix string, m map[string]any) {
		for k, v := range m {
			key := strings.TrimPrefix(prefix+"."+k, ".")
			if sub, ok := v.(map[string]any); ok {
				flatten(key, sub)
				continue
			}
			inFile = append(inFile, key)
			d, ok := documented[key]
			if !ok {
				t.Errorf("default policy key %s is not documented", key)
				continue
			}
			if want := tomlValue(v); d.Default != want {
				t.Errorf("key %s: documented default %s, file has %s", key, d.Default, want)
			}
		}
	}
	flatten("", raw)
	sort.Strings(inFile)

	// And every documented scalar key outside an array of tables is in the
	// default file (so the file shows every default, as its header says).
	for key, d := range documented {
		if strings.HasPrefix(key, "refresh.rule.") {
			if d.Default != "" {
				t.Errorf("array-of-tables key %s has a default %s", key, d.Default)
			}
			continue
		}
		if i := sort.SearchStrings(inFile, key); i == len(inFile) || inFile[i] != key {
			t.Errorf("documented key %s is missing from the default policy file", key)
		}
	}
	for _, must := range []string{"prune.quota", "schedule.run_timeout", "refresh.rule.match", "notify.min_urgency"} {
		if _, ok := documented[must]; !ok {
			t.Errorf("key %s not documented", must)
		}
	}
}

func TestDocsTypes(t *testing.T) {
	secs, err := Docs()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"prune.quota":          "size or percentage",
		"prune.min_age":        "duration",
		"schedule.prune":       "schedule",
		"prune.keep":           "list of strings",
		"prune.dangling":       "boolean",
		"refresh.budget":       "integer",
		"verify.mode":          "report | untag | remove | off",
		"prune.high_watermark": "percentage",
	}
	for _, s := range secs {
		for _, k := range s.Keys {
			if w, ok := want[k.Key]; ok {
				if k.Type != w {
					t.Errorf("%s: type %q, want %q", k.Key, k.Type, w)
				}
				delete(want, k.Key)
			}
		}
	}
	for k := range want {
		t.Errorf("%s not found", k)
	}
}
