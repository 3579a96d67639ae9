package images

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// service is what an image's binary needs to run outside a cluster, and how it says it
// is up.
type service struct {
	// env is the service's own configuration; listen is the address it serves on.
	env func(listen, kubeconfig string) []string
	// liveness and readiness are its health endpoints.
	liveness, readiness string
}

// services, read from their code: the function's runner (internal/runner) serves
// func's /health/liveness and /health/readiness, ready once the function has started;
// the watcher (watcher/internal/config, service) and the router (sse-router/server)
// serve /healthz and /readyz. Each needs a kubeconfig (in a pod: in-cluster credentials);
// the watcher also K_SINK. The API server given is a stand-in answering /version alone:
// the router is ready when its default cluster answers that, the watcher is ready as a
// standby replica (it cannot take the Lease there, so it does not lead), and the function
// reaches its API server only for events.
var services = map[string]service{
	"dwp-function": {
		env: func(listen, kc string) []string {
			return []string{"LISTEN_ADDRESS=" + listen, "DWP_KUBECONFIG=" + kc}
		},
		liveness: "/health/liveness", readiness: "/health/readiness",
	},
	"watcher": {
		env: func(listen, kc string) []string {
			return []string{"DWP_LISTEN_ADDRESS=" + listen, "DWP_KUBECONFIG=" + kc, "K_SINK=http://127.0.0.1:9/"}
		},
		liveness: "/healthz", readiness: "/readyz",
	},
	"sse-router": {
		env: func(listen, kc string) []string {
			return []string{"DWP_LISTEN_ADDRESS=" + listen, "DWP_KUBECONFIG=" + kc}
		},
		liveness: "/healthz", readiness: "/readyz",
	},
}

// The must-show: each image, built here from the sources and read back from its
// tarball, holds a static binary that runs from the image's filesystem as its
// configuration says and serves its health endpoints.
func TestImagesRunTheirEntrypoint(t *testing.T) {
	repo, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	kustomization := filepath.Join(work, "images", "kustomization.yaml")
	env := map[string]string{
		"DWP_IMAGES_REPO": repo, "DWP_IMAGES_OUT": filepath.Join(work, "out"),
		"DWP_IMAGES_VERSION": "v0.0.0-test", "DWP_IMAGES_REVISION": "0123456789abcdef0123456789abcdef01234567",
		"SOURCE_DATE_EPOCH": "1700000000", "DWP_IMAGES_KUSTOMIZATION": kustomization,
	}
	cfg, err := Load(nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	start := time.Now()
	built, err := Run(context.Background(), cfg, &out)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("built %d images in %s:\n%s", len(built), time.Since(start).Round(time.Millisecond), out.String())
	if len(built) != len(Targets) {
		t.Fatalf("built %d images, want %d", len(built), len(Targets))
	}
	for _, img := range built {
		line := fmt.Sprintf("%s  v0.0.0-test  %s  %s", img.Name, img.Digest, img.Path)
		if !containsFields(out.String(), line) {
			t.Errorf("output does not say %q", line)
		}
	}
	k, err := os.ReadFile(kustomization)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k, Kustomization(built)) {
		t.Errorf("kustomization:\n%s", k)
	}

	api := newAPIServer(t)
	kubeconfig := writeKubeconfig(t, api.URL)
	for i, img := range built {
		spec := cfg.Specs()[i]
		svc, ok := services[spec.BinaryName()]
		if !ok {
			t.Fatalf("no service known for %s", spec.BinaryName())
		}
		t.Run(spec.BinaryName(), func(t *testing.T) {
			image := readImage(t, img)
			cf, err := image.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			entry := "/usr/local/bin/" + spec.BinaryName()
			c := cf.Config
			if c.User != "65532:65532" || !slices.Equal(c.Entrypoint, []string{entry}) || c.WorkingDir != "/" || len(c.Cmd) != 0 {
				t.Errorf("user %q, entrypoint %q, cmd %q, working dir %q", c.User, c.Entrypoint, c.Cmd, c.WorkingDir)
			}
			for k, v := range map[string]string{
				LabelTitle: spec.BinaryName(), LabelVersion: "v0.0.0-test", LabelRevision: env["DWP_IMAGES_REVISION"],
				LabelSource: "https://github.com/dwp-sre/dwp-sre", LabelCreated: "2023-11-14T22:13:20Z",
			} {
				if c.Labels[k] != v {
					t.Errorf("label %s = %q, want %q", k, c.Labels[k], v)
				}
			}
			if cf.OS != "linux" || !cf.Created.Equal(time.Unix(1700000000, 0)) {
				t.Errorf("os %s, created %v", cf.OS, cf.Created)
			}

			root := extract(t, image)
			bin := filepath.Join(root, entry)
			assertStatic(t, bin)
			passwd, err := os.ReadFile(filepath.Join(root, "etc", "passwd"))
			if err != nil || !strings.Contains(string(passwd), "nonroot:x:65532:65532:") {
				t.Errorf("/etc/passwd: %q (%v)", passwd, err)
			}
			if st, err := os.Stat(filepath.Join(root, "tmp")); err != nil || st.Mode()&fs.ModeSticky == 0 || st.Mode().Perm() != 0o777 {
				t.Errorf("/tmp: %v (%v)", st.Mode(), err)
			}

			listen := freeAddr(t)
			cmd := exec.Command(bin)
			cmd.Dir = filepath.Join(root, c.WorkingDir)
			cmd.Env = append(slices.Clone(c.Env), svc.env(listen, kubeconfig)...)
			var logs bytes.Buffer
			cmd.Stdout, cmd.Stderr = &logs, &logs
			if os.Geteuid() == 0 {
				// As the image's user, as a container runtime would start it.
				cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: UID, Gid: GID}}
			}
			started := time.Now()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			defer func() {
				if cmd.ProcessState == nil {
					_ = cmd.Process.Kill()
					<-exited
				}
				if t.Failed() {
					t.Logf("%s's output:\n%s", spec.BinaryName(), logs.String())
				}
			}()
			if os.Geteuid() == 0 {
				assertUID(t, cmd.Process.Pid, UID)
			}
			for _, p := range []string{svc.liveness, svc.readiness} {
				if err := waitOK(fmt.Sprintf("http://%s%s", listen, p), exited, 30*time.Second); err != nil {
					t.Fatalf("%s: %v", p, err)
				}
			}
			t.Logf("%s served %s and %s %s after exec", spec.BinaryName(), svc.liveness, svc.readiness, time.Since(started).Round(time.Millisecond))
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-exited:
				if err != nil {
					t.Errorf("after SIGTERM: %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Error("still running 20s after SIGTERM")
			}
		})
	}
	if n := api.versions.Load(); n == 0 {
		t.Error("the router was ready without asking its API server")
	}
}

// containsFields reports whether out has a line with line's fields, however spaced.
func containsFields(out, line string) bool {
	want := strings.Fields(line)
	for _, l := range strings.Split(out, "\n") {
		if slices.Equal(strings.Fields(l), want) {
			return true
		}
	}
	return false
}

// readImage reads the image back from its OCI layout tarball, checking the layout's
// index names it by its tag and its digest is the one reported.
func readImage(t *testing.T, img Image) v1.Image {
	t.Helper()
	dir := t.TempDir()
	untar(t, img.Path, dir)
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 {
		t.Fatalf("index of %d manifests", len(im.Manifests))
	}
	d := im.Manifests[0]
	if d.Digest != img.Digest || d.MediaType != "application/vnd.oci.image.manifest.v1+json" ||
		d.Annotations[AnnotationRefName] != img.Tag || d.Annotations[AnnotationContainerName] != img.Name+":"+img.Tag {
		t.Errorf("index names %+v; built %s:%s@%s", d, img.Name, img.Tag, img.Digest)
	}
	image, err := idx.Image(d.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := image.Digest(); err != nil || got != img.Digest {
		t.Fatalf("read back as %s (%v), built %s", got, err, img.Digest)
	}
	return image
}

// untar writes the tarball's files under dir.
func untar(t *testing.T, tarball, dir string) {
	t.Helper()
	f, err := os.Open(tarball)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	writeTree(t, f, dir)
}

// extract writes the image's flattened filesystem to a folder readable by its user.
func extract(t *testing.T, img v1.Image) string {
	t.Helper()
	root := t.TempDir()
	// t.TempDir's folders are the test's user's alone; the image's user must reach its root.
	for _, d := range []string{filepath.Dir(root), root} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	rc := mutate.Extract(img)
	defer rc.Close()
	writeTree(t, rc, root)
	return root
}

// writeTree writes a tar stream's directories and regular files under dir with their
// modes (and, as root, their owners).
func writeTree(t *testing.T, r io.Reader, dir string) {
	t.Helper()
	tr := tar.NewReader(r)
	var dirs []*tar.Header
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !filepath.IsLocal(h.Name) {
			t.Fatalf("entry %q leaves the tree", h.Name)
		}
		p := filepath.Join(dir, h.Name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o700); err != nil {
				t.Fatal(err)
			}
			dirs = append(dirs, h) // modes set last, once nothing more is written inside
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, h.FileInfo().Mode().Perm())
			if err != nil {
				t.Fatal(err)
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				t.Fatal(err)
			}
			setOwner(t, p, h)
		default:
			t.Fatalf("entry %q of type %q", h.Name, h.Typeflag)
		}
	}
	for _, h := range dirs {
		p := filepath.Join(dir, h.Name)
		if err := os.Chmod(p, h.FileInfo().Mode()&(fs.ModePerm|fs.ModeSticky)); err != nil {
			t.Fatal(err)
		}
		setOwner(t, p, h)
	}
}

func setOwner(t *testing.T, p string, h *tar.Header) {
	t.Helper()
	if os.Geteuid() != 0 {
		return
	}
	if err := os.Lchown(p, h.Uid, h.Gid); err != nil {
		t.Fatal(err)
	}
}

// assertStatic checks that bin is a Linux executable needing no dynamic loader.
func assertStatic(t *testing.T, bin string) {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s asks for a dynamic loader", bin)
		}
	}
	if f.Section(".symtab") != nil {
		t.Errorf("%s keeps its symbol table (built without -s)", bin)
	}
}

// assertUID checks the process's real and effective user.
func assertUID(t *testing.T, pid, uid int) {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(status), "\n") {
		if f := strings.Fields(l); len(f) >= 3 && f[0] == "Uid:" {
			if f[1] != fmt.Sprint(uid) || f[2] != fmt.Sprint(uid) {
				t.Errorf("runs as %s", l)
			}
			return
		}
	}
	t.Errorf("no Uid in /proc/%d/status", pid)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// waitOK polls url until it answers 200, the process exits, or the timeout.
func waitOK(url string, exited <-chan error, timeout time.Duration) error {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	last := errors.New("no answer")
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("exited (%v) before answering 200; last: %v", err, last)
		default:
		}
		resp, err := client.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(b))
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("no 200 within %s; last: %v", timeout, last)
}

// apiServer stands in for a kube-apiserver: it answers /version; anything else is not found.
type apiServer struct {
	*httptest.Server
	versions atomic.Int64
}

func newAPIServer(t *testing.T) *apiServer {
	t.Helper()
	s := &apiServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/version" {
			s.versions.Add(1)
			fmt.Fprint(w, `{"major":"1","minor":"37","gitVersion":"v1.37.2","platform":"linux/amd64"}`)
			return
		}
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintf(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404,"message":"%s not served here"}`, r.URL.Path)
	}))
	t.Cleanup(s.Close)
	return s
}

// writeKubeconfig writes a kubeconfig of the server that the image's user can read.
func writeKubeconfig(t *testing.T, server string) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(dir, "kubeconfig")
	err := os.WriteFile(p, []byte(`apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: "`+server+`"}}]
users: [{name: test, user: {token: test-token}}]
contexts: [{name: test, context: {cluster: test, user: test}}]
current-context: test
`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
