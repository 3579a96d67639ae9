// Package images builds the OCI images of the project's services without a container
// engine. An image is a static Go binary on a base made here, with nothing pulled: a
// nonroot user, /tmp and, when given, a CA bundle. It is written as an OCI image layout
// tarball whose digest depends only on its inputs (the sources, the Go toolchain, the
// labels, the created time and the CA bundle), so the same source gives the same digest.
package images

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// What every image has in common.
const (
	// UID and GID are the user the services run as: distroless' nonroot, numeric so that
	// Kubernetes can check runAsNonRoot.
	UID, GID = 65532, 65532
	// User is the image's user:group.
	User = "65532:65532"
	// BinDir holds the service's binary.
	BinDir = "/usr/local/bin"
	// WorkingDir is the image's working directory.
	WorkingDir = "/"
	// CACertsPath is where Go's crypto/x509 looks first on Linux for the system roots.
	CACertsPath = "/etc/ssl/certs/ca-certificates.crt"
	// PathEnv is the image's one environment variable.
	PathEnv = "PATH=/usr/local/bin:/usr/bin:/bin"
)

// The OCI annotations (image-spec annotations.md) set as labels and on the manifest.
const (
	LabelTitle       = "org.opencontainers.image.title"
	LabelDescription = "org.opencontainers.image.description"
	LabelSource      = "org.opencontainers.image.source"
	LabelRevision    = "org.opencontainers.image.revision"
	LabelVersion     = "org.opencontainers.image.version"
	LabelLicenses    = "org.opencontainers.image.licenses"
	LabelCreated     = "org.opencontainers.image.created"
)

// Annotations of the layout's index naming the image: the tag, as the OCI layout asks,
// and the whole reference, which containerd and Docker name an imported image by.
const (
	AnnotationRefName       = "org.opencontainers.image.ref.name"
	AnnotationContainerName = "io.containerd.image.name"
)

// Spec is one image to build.
type Spec struct {
	// Name is the repository, e.g. ghcr.io/dwp-sre/watcher; Tag its version.
	Name, Tag string
	// Dir is the Go module's root; Package the main package, relative to it (./watcher).
	Dir, Package string
	// Binary names the executable in BinDir (empty: the last element of Name).
	Binary string
	// Arch is the GOARCH built for (empty: this machine's).
	Arch string
	// Created is the image's creation time and every file's modification time.
	Created time.Time
	// Description, Source, Revision and Licenses fill the OCI labels (empty: left out).
	Description, Source, Revision, Licenses string
	// CACerts is a PEM bundle put at CACertsPath (empty: no CA certificates).
	CACerts string
	// Out is the OCI image layout tarball written.
	Out string
}

// Image is a built image.
type Image struct {
	Name, Tag string
	// Digest is the manifest's: what a registry and kustomize name the image by.
	Digest v1.Hash
	// Path is the OCI image layout tarball.
	Path string
}

// BinaryName is the executable's file name.
func (s Spec) BinaryName() string {
	if s.Binary != "" {
		return s.Binary
	}
	return path.Base(s.Name)
}

// Entrypoint is the binary's path in the image.
func (s Spec) Entrypoint() string { return path.Join(BinDir, s.BinaryName()) }

// Architecture is the GOARCH built for.
func (s Spec) Architecture() string {
	if s.Arch != "" {
		return s.Arch
	}
	return runtime.GOARCH
}

// tagPattern is the OCI distribution spec's tag, which registries enforce (go-containerregistry
// checks the characters but not the first one).
var tagPattern = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)

func checkTag(tag string) error {
	if !tagPattern.MatchString(tag) {
		return fmt.Errorf("not a tag (%s): %q", tagPattern, tag)
	}
	return nil
}

// Ref is the image's name with its tag, checked as a registry would.
func (s Spec) Ref() (name.Tag, error) {
	if s.Tag == "" {
		return name.Tag{}, fmt.Errorf("image %s has no tag", s.Name)
	}
	if err := checkTag(s.Tag); err != nil {
		return name.Tag{}, fmt.Errorf("image %s: %w", s.Name, err)
	}
	ref, err := name.NewTag(s.Name+":"+s.Tag, name.StrictValidation)
	if err != nil {
		return name.Tag{}, fmt.Errorf("image reference: %w", err)
	}
	return ref, nil
}

// Labels are the image's OCI labels; empty values are left out.
func (s Spec) Labels() map[string]string {
	l := map[string]string{
		LabelTitle:   s.BinaryName(),
		LabelVersion: s.Tag,
		LabelCreated: s.Created.UTC().Format(time.RFC3339),
	}
	for k, v := range map[string]string{
		LabelDescription: s.Description, LabelSource: s.Source,
		LabelRevision: s.Revision, LabelLicenses: s.Licenses,
	} {
		if v != "" {
			l[k] = v
		}
	}
	return l
}

func (s Spec) validate() error {
	if _, err := s.Ref(); err != nil {
		return err
	}
	switch {
	case s.Package == "":
		return fmt.Errorf("image %s: no Go package", s.Name)
	case s.Out == "":
		return fmt.Errorf("image %s: no output file", s.Name)
	case strings.ContainsAny(s.BinaryName(), `/\`) || s.BinaryName() == "." || s.BinaryName() == "..":
		return fmt.Errorf("image %s: binary name %q is not a file name", s.Name, s.BinaryName())
	}
	return nil
}

// Build compiles the spec's package and writes its image to s.Out.
func Build(ctx context.Context, s Spec) (Image, error) {
	if err := s.validate(); err != nil {
		return Image{}, err
	}
	ref, _ := s.Ref()
	scratch, err := os.MkdirTemp("", "dwp-images-")
	if err != nil {
		return Image{}, err
	}
	defer os.RemoveAll(scratch)

	bin := filepath.Join(scratch, s.BinaryName())
	if err := compile(ctx, s, bin); err != nil {
		return Image{}, err
	}
	img, err := assemble(s, bin, scratch)
	if err != nil {
		return Image{}, fmt.Errorf("image %s: %w", s.Name, err)
	}
	if err := writeLayoutTar(img, ref, s.Out, filepath.Join(scratch, "layout"), s.Created); err != nil {
		return Image{}, fmt.Errorf("image %s: %w", s.Name, err)
	}
	digest, err := img.Digest()
	if err != nil {
		return Image{}, err
	}
	return Image{Name: s.Name, Tag: s.Tag, Digest: digest, Path: s.Out}, nil
}

// compile builds the spec's package into out as a static Linux binary. The flags make
// the build reproducible: no cgo, no paths of this machine, no VCS stamp, no symbol table.
func compile(ctx context.Context, s Spec, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", out, s.Package)
	cmd.Dir = s.Dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+s.Architecture())
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", s.Package, err, b)
	}
	return nil
}

// assemble makes the image of the binary bin: a base layer (users, /tmp, CA bundle) and
// the binary's layer, with the spec's configuration. scratch holds the binary's layer.
func assemble(s Spec, bin, scratch string) (v1.Image, error) {
	created := v1.Time{Time: s.Created.UTC()}
	base, err := baseLayer(s)
	if err != nil {
		return nil, fmt.Errorf("base layer: %w", err)
	}
	app, err := binaryLayer(s, bin, filepath.Join(scratch, "binary-layer.tar"))
	if err != nil {
		return nil, fmt.Errorf("binary layer: %w", err)
	}
	baseWhat := "dwp-images: nonroot user 65532, /tmp"
	if s.CACerts != "" {
		baseWhat += ", CA certificates"
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err = mutate.Append(img,
		mutate.Addendum{Layer: base, History: v1.History{Created: created, CreatedBy: baseWhat}},
		mutate.Addendum{Layer: app, History: v1.History{Created: created, CreatedBy: "go build -trimpath -buildvcs=false -ldflags='-s -w' " + s.Package + " (CGO_ENABLED=0)"}},
	)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Created = "linux", s.Architecture(), created
	labels := s.Labels()
	cf.Config = v1.Config{
		User:       User,
		Entrypoint: []string{s.Entrypoint()},
		WorkingDir: WorkingDir,
		Env:        []string{PathEnv},
		Labels:     labels,
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, err
	}
	annotated, ok := mutate.Annotations(img, labels).(v1.Image)
	if !ok {
		return nil, errors.New("annotating the manifest lost the image")
	}
	return annotated, nil
}

// file is one entry of a layer: a directory, or a regular file with its body.
type file struct {
	name     string
	dir      bool
	mode     int64
	uid, gid int
	body     []byte
}

func dir(name string, mode int64) file { return file{name: name + "/", dir: true, mode: mode} }

func (f file) header(size int64, mtime time.Time) *tar.Header {
	h := &tar.Header{Name: f.name, Mode: f.mode, Uid: f.uid, Gid: f.gid, ModTime: mtime, Size: size, Typeflag: tar.TypeReg}
	if f.dir {
		h.Typeflag, h.Size = tar.TypeDir, 0
	}
	return h
}

// baseFiles are the base layer's entries, in order: what a Go service needs of an OS.
func baseFiles(caCerts []byte) []file {
	files := []file{
		dir("etc", 0o755),
		{name: "etc/group", mode: 0o644, body: []byte("root:x:0:\nnonroot:x:65532:\n")},
		{name: "etc/passwd", mode: 0o644, body: []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
	}
	if caCerts != nil {
		files = append(files, dir("etc/ssl", 0o755), dir("etc/ssl/certs", 0o755),
			file{name: strings.TrimPrefix(CACertsPath, "/"), mode: 0o644, body: caCerts})
	}
	nonroot := dir("home/nonroot", 0o700)
	nonroot.uid, nonroot.gid = UID, GID
	return append(files,
		dir("home", 0o755), nonroot,
		dir("tmp", 0o1777),
		dir("usr", 0o755), dir("usr/local", 0o755), dir("usr/local/bin", 0o755),
	)
}

func baseLayer(s Spec) (v1.Layer, error) {
	var ca []byte
	if s.CACerts != "" {
		b, err := os.ReadFile(s.CACerts)
		if err != nil {
			return nil, fmt.Errorf("CA certificates: %w", err)
		}
		if !bytes.Contains(b, []byte("-----BEGIN CERTIFICATE-----")) {
			return nil, fmt.Errorf("CA certificates: %s holds no PEM certificate", s.CACerts)
		}
		ca = b
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range baseFiles(ca) {
		if err := tw.WriteHeader(f.header(int64(len(f.body)), s.Created)); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithMediaType(types.OCILayer))
}

// binaryLayer writes the layer holding bin at the spec's entrypoint to tarPath.
func binaryLayer(s Spec, bin, tarPath string) (v1.Layer, error) {
	in, err := os.Open(bin)
	if err != nil {
		return nil, err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return nil, err
	}
	out, err := os.Create(tarPath)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	tw := tar.NewWriter(out)
	f := file{name: strings.TrimPrefix(s.Entrypoint(), "/"), mode: 0o755}
	if err := tw.WriteHeader(f.header(st.Size(), s.Created)); err != nil {
		return nil, err
	}
	if _, err := io.Copy(tw, in); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := out.Close(); err != nil {
		return nil, err
	}
	// The compressed layer is kept in memory: its digest and the layout need it twice.
	return tarball.LayerFromFile(tarPath, tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
}

// writeLayoutTar writes img as an OCI image layout in dir, then that folder as the tarball
// out (atomically), every entry owned by root and dated mtime.
func writeLayoutTar(img v1.Image, ref name.Tag, out, dir string, mtime time.Time) error {
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("OCI layout: %w", err)
	}
	err = p.AppendImage(img, layout.WithAnnotations(map[string]string{
		AnnotationRefName:       ref.TagStr(),
		AnnotationContainerName: ref.Name(),
	}))
	if err != nil {
		return fmt.Errorf("OCI layout: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tarDir(tmp, dir, mtime); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", out, err)
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), out)
}

// tarDir writes the tree under root to w in lexical order with fixed metadata.
func tarDir(w io.Writer, root string, mtime time.Time) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			return tw.WriteHeader(dir(rel, 0o755).header(0, mtime))
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("%s is not a regular file", p)
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(file{name: rel, mode: 0o644}.header(st.Size(), mtime)); err != nil {
			return err
		}
		_, err = io.Copy(tw, f)
		return err
	})
	if err != nil {
		return err
	}
	return tw.Close()
}
