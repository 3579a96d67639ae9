package controlplane

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/tools/clientcmd"
)

// A seed is an etcd data folder that already holds the CRDs, made once per set of
// manifests. A fresh plane starts from a copy of it: establishing the large Argo CRDs takes
// the API server many seconds, loading them from etcd does not.

func seedDir(binDir string) string { return filepath.Join(binDir, "seed") }

func seedStamp(binDir string) (string, error) {
	s, err := fileStamp(manifestPath(binDir, "crds"))
	if err != nil {
		return "", err
	}
	return s + " " + kubeVersion, nil
}

func seedReady(binDir string) (stamp string, ok bool) {
	stamp, err := seedStamp(binDir)
	if err != nil {
		return "", false
	}
	old, err := os.ReadFile(filepath.Join(seedDir(binDir), "stamp"))
	return stamp, err == nil && string(old) == stamp
}

// ensureSeed makes the seed when it is missing or stale.
func ensureSeed(ctx context.Context, binDir string, out io.Writer) error {
	stamp, ok := seedReady(binDir)
	if ok {
		return nil
	}
	if stamp == "" {
		return fmt.Errorf("no manifests to seed from")
	}
	fmt.Fprintln(out, "seeding etcd with the CRDs (once per set of manifests)")
	began := time.Now()
	tmp, err := os.MkdirTemp("", "dwp-seed-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	ports, err := freePorts()
	if err != nil {
		return err
	}
	cfg := Config{Dir: tmp, BinDir: binDir, Ports: ports, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Out: io.Discard}
	files, err := prepareState(cfg)
	if err != nil {
		return err
	}
	cp := newControlPlane(cfg)
	cp.info = files.info
	if cp.admin, err = clientcmd.BuildConfigFromFlags("", files.info.Kubeconfig); err != nil {
		return err
	}
	cp.define(files)
	defer cp.Stop()
	for _, name := range []string{"etcd", "kube-apiserver"} {
		if err := cp.startProcess(name); err != nil {
			return err
		}
	}
	if err := cp.waitAPIServer(ctx, 60*time.Second); err != nil {
		return err
	}
	crds, err := readManifestSet(binDir, "crds")
	if err != nil {
		return err
	}
	ap, err := newApplier(cp.admin, cfg.Logger)
	if err != nil {
		return err
	}
	actx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	if err := ap.apply(actx, crds); err != nil {
		return fmt.Errorf("seed CRDs: %w", err)
	}
	if err := ap.waitEstablished(actx, crds); err != nil {
		return fmt.Errorf("seed CRDs: %w", err)
	}
	cp.Stop() // etcd closes its data cleanly on SIGTERM
	dst := seedDir(binDir)
	if err := os.RemoveAll(dst); err != nil {
		return err
	}
	if err := copyTree(filepath.Join(tmp, "etcd"), filepath.Join(dst, "etcd")); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dst, "stamp"), []byte(stamp), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(out, "seeded in %s\n", time.Since(began).Round(time.Second))
	return nil
}

// plantSeed copies the seed into a state folder that has no etcd data yet, and records
// that its CRDs are applied. It reports whether it did.
func plantSeed(binDir, stateDir string) (bool, error) {
	etcdDir := filepath.Join(stateDir, "etcd")
	if _, err := os.Stat(etcdDir); err == nil {
		return false, nil
	}
	if _, ok := seedReady(binDir); !ok {
		return false, nil
	}
	if err := copyTree(filepath.Join(seedDir(binDir), "etcd"), etcdDir); err != nil {
		return false, fmt.Errorf("copy etcd seed: %w", err)
	}
	crdStamp, err := fileStamp(manifestPath(binDir, "crds"))
	if err != nil {
		return false, err
	}
	return true, os.WriteFile(filepath.Join(stateDir, "crds-applied"), []byte(crdStamp), 0o644)
}

func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		outf, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			return err
		}
		if _, err := io.Copy(outf, in); err != nil {
			outf.Close()
			return err
		}
		return outf.Close()
	})
}
