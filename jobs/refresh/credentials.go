package refresh

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	helperclient "github.com/docker/docker-credential-helpers/client"
	"github.com/docker/docker-credential-helpers/credentials"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/pkg/sysregistriesv2"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage/pkg/homedir"
)

// helperWaitDelay is how long a killed credential helper's output pipes may
// stay open (held by a process that left its group) before the lookup
// gives up on them.
const helperWaitDelay = time.Second

// maxHelperOutput caps what is kept of a credential helper's standard
// output: its answer is one small JSON object.
const maxHelperOutput = 1 << 20

// lookupCredentials finds the credentials for named exactly as
// containers/image's config.GetCredentialsForRef does (sys.DockerAuthConfig;
// registries.conf's credential-helpers in order, where containers-auth.json
// means the auth files: --authfile or $XDG_RUNTIME_DIR/containers/auth.json,
// ~/.config/containers/auth.json, Docker's config.json, ~/.dockercfg, each
// with its credHelpers), but runs every credential helper under ctx:
// containers/image starts helpers with exec.Command and waits for them
// however long they take, so a hanging helper (a keychain prompt nobody
// answers) kept a refresh running past every timeout. Here the helper runs
// in its own process group, which is killed when ctx ends.
func lookupCredentials(ctx context.Context, log *slog.Logger, sys *types.SystemContext, named reference.Named) (types.DockerAuthConfig, error) {
	if sys != nil && sys.DockerAuthConfig != nil {
		return *sys.DockerAuthConfig, nil
	}
	key := named.Name()
	registry, _, _ := strings.Cut(key, "/")
	helpers, err := sysregistriesv2.CredentialHelpers(sys)
	if err != nil {
		return types.DockerAuthConfig{}, fmt.Errorf("credential helpers in registries.conf: %w", err)
	}
	var errs []error
	for _, helper := range helpers {
		var creds types.DockerAuthConfig
		var err error
		if helper == sysregistriesv2.AuthenticationFileHelper {
			creds, err = credentialsFromAuthFiles(ctx, log, sys, key, registry)
		} else {
			creds, err = credentialsFromHelper(ctx, helper, registry)
		}
		if err != nil {
			if ctx.Err() != nil {
				return types.DockerAuthConfig{}, err
			}
			errs = append(errs, err)
			continue
		}
		if creds != (types.DockerAuthConfig{}) {
			return creds, nil
		}
	}
	if len(errs) > 0 {
		return types.DockerAuthConfig{}, fmt.Errorf("looking up credentials: %w", errors.Join(errs...))
	}
	return types.DockerAuthConfig{}, nil
}

// authFile is one auth file to search; legacy files (~/.dockercfg) map
// registries to entries directly.
type authFile struct {
	path   string
	legacy bool
}

// authFiles lists the auth files in search order, as containers/image's
// getAuthFilePaths does on Linux.
func authFiles(log *slog.Logger, sys *types.SystemContext) []authFile {
	var files []authFile
	explicit := false
	switch {
	case sys != nil && sys.AuthFilePath != "" && sys.DockerCompatAuthFilePath != "":
		log.Warn("AuthFilePath and DockerCompatAuthFilePath can not be set simultaneously; using the default auth files")
	case sys != nil && sys.AuthFilePath != "":
		files, explicit = append(files, authFile{path: sys.AuthFilePath}), true
	case sys != nil && sys.DockerCompatAuthFilePath != "":
		files, explicit = append(files, authFile{path: sys.DockerCompatAuthFilePath}), true
	case sys != nil && sys.LegacyFormatAuthFilePath != "":
		files, explicit = append(files, authFile{path: sys.LegacyFormatAuthFilePath, legacy: true}), true
	case sys != nil && sys.RootForImplicitAbsolutePaths != "":
		files = append(files, authFile{path: filepath.Join(sys.RootForImplicitAbsolutePaths, fmt.Sprintf("/run/containers/%d/auth.json", os.Getuid()))})
	default:
		if rt := os.Getenv("XDG_RUNTIME_DIR"); rt != "" {
			if _, err := os.Stat(rt); errors.Is(err, os.ErrNotExist) {
				log.Warn("$XDG_RUNTIME_DIR does not exist; its auth.json is not searched", "dir", rt)
			} else {
				files = append(files, authFile{path: filepath.Join(rt, "containers/auth.json")})
			}
		} else {
			files = append(files, authFile{path: fmt.Sprintf("/run/containers/%d/auth.json", os.Getuid())})
		}
	}
	if explicit {
		return files
	}
	home := homedir.Get()
	cfg := os.Getenv("XDG_CONFIG_HOME")
	if cfg == "" {
		cfg = filepath.Join(home, ".config")
	}
	files = append(files, authFile{path: filepath.Join(cfg, "containers/auth.json")})
	if dc := os.Getenv("DOCKER_CONFIG"); dc != "" {
		files = append(files, authFile{path: filepath.Join(dc, "config.json")})
	} else {
		files = append(files, authFile{path: filepath.Join(home, ".docker/config.json")})
	}
	return append(files, authFile{path: filepath.Join(home, ".dockercfg"), legacy: true})
}

// authEntry is one "auths" entry of an auth file.
type authEntry struct {
	Auth          string `json:"auth,omitempty"`
	IdentityToken string `json:"identitytoken,omitempty"`
}

// credentialsFromAuthFiles searches the auth files in order; the first
// file naming the registry (in credHelpers or auths) decides.
func credentialsFromAuthFiles(ctx context.Context, log *slog.Logger, sys *types.SystemContext, key, registry string) (types.DockerAuthConfig, error) {
	for _, f := range authFiles(log, sys) {
		creds, err := credentialsInFile(ctx, f, key, registry)
		if err != nil {
			return types.DockerAuthConfig{}, err
		}
		if creds != (types.DockerAuthConfig{}) {
			return creds, nil
		}
	}
	return types.DockerAuthConfig{}, nil
}

// credentialsInFile is containers/image's findCredentialsInFile: the
// file's credHelpers entry for the registry, else the best "auths" entry
// (repository, its namespaces, the registry), else an entry whose key
// normalizes to the registry (URLs, docker.io's index host).
func credentialsInFile(ctx context.Context, f authFile, key, registry string) (types.DockerAuthConfig, error) {
	raw, err := os.ReadFile(f.path)
	if errors.Is(err, os.ErrNotExist) {
		return types.DockerAuthConfig{}, nil
	}
	if err != nil {
		return types.DockerAuthConfig{}, fmt.Errorf("reading JSON file %q: %w", f.path, err)
	}
	var content struct {
		Auths       map[string]authEntry `json:"auths"`
		CredHelpers map[string]string    `json:"credHelpers,omitempty"`
	}
	if f.legacy {
		err = json.Unmarshal(raw, &content.Auths)
	} else {
		err = json.Unmarshal(raw, &content)
	}
	if err != nil {
		return types.DockerAuthConfig{}, fmt.Errorf("reading JSON file %q: unmarshaling JSON at %q: %w", f.path, f.path, err)
	}
	if h, ok := content.CredHelpers[registry]; ok {
		return credentialsFromHelper(ctx, h, registry)
	}
	keys := []string{registry}
	if !f.legacy {
		keys = keys[:0]
		for k := key; ; {
			keys = append(keys, k)
			i := strings.LastIndex(k, "/")
			if i < 0 {
				break
			}
			k = k[:i]
		}
	}
	for _, k := range keys {
		if e, ok := content.Auths[k]; ok {
			return decodeAuth(f.path, e)
		}
	}
	norm := normalizeRegistry(registry)
	for k, e := range content.Auths {
		if normalizeAuthKey(k, f.legacy) == norm {
			return decodeAuth(f.path, e)
		}
	}
	return types.DockerAuthConfig{}, nil
}

func decodeAuth(path string, e authEntry) (types.DockerAuthConfig, error) {
	dec, err := base64.StdEncoding.DecodeString(e.Auth)
	if err != nil {
		return types.DockerAuthConfig{}, fmt.Errorf("auth file %s: decoding an auth entry: %w", path, err)
	}
	user, pass, ok := strings.Cut(string(dec), ":")
	if !ok {
		// As Docker and containers/image do: an entry without a password
		// (e.g. {} left by a credential helper) is skipped.
		return types.DockerAuthConfig{}, nil
	}
	return types.DockerAuthConfig{Username: user, Password: strings.Trim(pass, "\x00"), IdentityToken: e.IdentityToken}, nil
}

func normalizeAuthKey(key string, legacy bool) string {
	s := strings.TrimPrefix(strings.TrimPrefix(key, "http://"), "https://")
	if legacy || s != key {
		s, _, _ = strings.Cut(s, "/")
	}
	return normalizeRegistry(s)
}

func normalizeRegistry(r string) string {
	if r == "registry-1.docker.io" || r == "docker.io" {
		return "index.docker.io"
	}
	return r
}

// credentialsFromHelper asks docker-credential-NAME for the registry's
// credentials (the docker-credential-helpers protocol), bounded by ctx.
// "Not found" is no credentials, not an error.
func credentialsFromHelper(ctx context.Context, name, registry string) (types.DockerAuthConfig, error) {
	prog := "docker-credential-" + name
	creds, err := helperclient.Get(func(args ...string) helperclient.Program {
		return newHelperProgram(ctx, prog, args...)
	}, registry)
	if ctx.Err() != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return types.DockerAuthConfig{}, fmt.Errorf("%w: credential helper %s for %s: no answer, killed", ErrTimeout, prog, registry)
		}
		return types.DockerAuthConfig{}, fmt.Errorf("credential helper %s for %s: %w", prog, registry, ctx.Err())
	}
	if err != nil {
		if credentials.IsErrCredentialsNotFound(err) {
			return types.DockerAuthConfig{}, nil
		}
		return types.DockerAuthConfig{}, fmt.Errorf("credential helper %s for %s: %w", prog, registry, err)
	}
	if creds.Username == "<token>" {
		return types.DockerAuthConfig{IdentityToken: creds.Secret}, nil
	}
	return types.DockerAuthConfig{Username: creds.Username, Password: creds.Secret}, nil
}

// helperProgram is a credential helper process bound to a context: it runs
// in its own process group, and when the context ends the whole group gets
// SIGKILL (a helper that is a shell script waiting on a child is two
// processes).
type helperProgram struct{ cmd *exec.Cmd }

var _ helperclient.Program = (*helperProgram)(nil)

func newHelperProgram(ctx context.Context, prog string, args ...string) *helperProgram {
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = helperWaitDelay
	return &helperProgram{cmd: cmd}
}

// Input sets the helper's standard input.
func (p *helperProgram) Input(in io.Reader) { p.cmd.Stdin = in }

// Output runs the helper and returns its standard output; output beyond
// maxHelperOutput is drained, not kept, and makes the call fail.
func (p *helperProgram) Output() ([]byte, error) {
	out := &cappedBuffer{max: maxHelperOutput}
	p.cmd.Stdout = out
	err := p.cmd.Run()
	if out.over {
		// The client quotes the output in its error: keep that short.
		return out.buf.Bytes()[:256], fmt.Errorf("answer longer than %d bytes", maxHelperOutput)
	}
	return out.buf.Bytes(), err
}

// cappedBuffer keeps the first max bytes written to it and drops the rest,
// so a runaway writer is drained (not blocked) until its deadline.
type cappedBuffer struct {
	buf  bytes.Buffer
	max  int
	over bool
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.buf.Len(); len(p) > room {
		b.buf.Write(p[:max(room, 0)])
		b.over = true
		return len(p), nil
	}
	return b.buf.Write(p)
}
