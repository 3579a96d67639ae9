package images

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Run builds every target's image, prints each one's name, tag, digest and file to w, and
// writes the kustomize component naming them by digest.
func Run(ctx context.Context, c Config, w io.Writer) ([]Image, error) {
	var built []Image
	for _, s := range c.Specs() {
		start := time.Now()
		img, err := Build(ctx, s)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(w, "built %s in %s\n", s.Name, time.Since(start).Round(100*time.Millisecond))
		built = append(built, img)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "IMAGE\tTAG\tDIGEST\tFILE")
	for _, img := range built {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", img.Name, img.Tag, img.Digest, img.Path)
	}
	if err := tw.Flush(); err != nil {
		return nil, err
	}
	if c.Kustomization != "" {
		if err := WriteKustomization(c.Kustomization, built); err != nil {
			return nil, err
		}
		fmt.Fprintf(w, "wrote %s\n", c.Kustomization)
	}
	return built, nil
}

// Kustomization is the kustomize component that names the images by digest (kustomize's
// images transformer: a digest replaces the manifests' tag), sorted by name.
func Kustomization(imgs []Image) []byte {
	imgs = slices.Clone(imgs)
	slices.SortFunc(imgs, func(a, b Image) int { return strings.Compare(a.Name, b.Name) })
	var b bytes.Buffer
	b.WriteString("# Written by `make images`: the images it built, named by digest.\n")
	b.WriteString("apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\nimages:\n")
	for _, img := range imgs {
		fmt.Fprintf(&b, "- name: %s\n  digest: %s\n", img.Name, img.Digest)
	}
	return b.Bytes()
}

// WriteKustomization writes Kustomization(imgs) to path, creating its folder; a reader
// never sees half a file.
func WriteKustomization(path string, imgs []Image) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(Kustomization(imgs)); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
