// Package cdrun is what a CD run is: who asked to deploy what where. The task function
// writes it into the workflow it submits, sealed with its own key, and trusts only a
// sealed run when it performs the steps with its own rights: anyone who may create a
// workflow could otherwise write a run that deploys into a namespace they may not touch.
package cdrun

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// Annotations of a CD run's workflow.
const (
	// AnnotationRun holds the Run as JSON.
	AnnotationRun = "dwp.io/cd-run"
	// AnnotationSeal holds the run's seal (hex HMAC-SHA256 of namespace, name and run).
	AnnotationSeal = "dwp.io/cd-seal"
	// AnnotationTemplateKind marks a (Cluster)WorkflowTemplate as a CD Task Runner and
	// names its kind (manifest.Kind, or KindAppDelete).
	AnnotationTemplateKind = "dwp.io/cd-kind"
)

// ParamTimeout is every run's bound on its wait for Argo CD (a Go duration), at most
// MaxTimeout.
const (
	ParamTimeout = "timeout"
	MaxTimeout   = 24 * time.Hour
)

// KindAppDelete is the run that deletes an app's Application, its objects and its folder.
const KindAppDelete = "app-delete"

// Run is one CD run.
type Run struct {
	Kind string `json:"kind"`
	// App is the app deployed; the workflow's namespace is the app's namespace.
	App string `json:"app"`
	// User is the portal user who submitted the run, as the API server authenticated them.
	User string `json:"user"`
	// Params are every parameter of the run, the template's defaults filled in.
	Params map[string]string `json:"params"`
}

// Key seals runs. It must be the same for every replica of the function.
type Key []byte

// MinKeyLen is the shortest key accepted (bytes).
const MinKeyLen = 32

// LoadKey reads a key file: at least MinKeyLen bytes (surrounding white space ignored).
func LoadKey(path string) (Key, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("run key: %w", err)
	}
	k := Key(strings.TrimSpace(string(b)))
	if len(k) < MinKeyLen {
		return nil, fmt.Errorf("run key %s: %d bytes, want at least %d", path, len(k), MinKeyLen)
	}
	return k, nil
}

// Annotations are the annotations that carry run on the workflow namespace/name.
func (k Key) Annotations(namespace, name string, run Run) (map[string]string, error) {
	b, err := json.Marshal(run)
	if err != nil {
		return nil, fmt.Errorf("encode run: %w", err)
	}
	return map[string]string{AnnotationRun: string(b), AnnotationSeal: k.seal(namespace, name, b)}, nil
}

func (k Key) seal(namespace, name string, run []byte) string {
	m := hmac.New(sha256.New, k)
	// Lengths first, so that no two different inputs make the same bytes.
	fmt.Fprintf(m, "%d:%s%d:%s%d:", len(namespace), namespace, len(name), name, len(run))
	m.Write(run)
	return hex.EncodeToString(m.Sum(nil))
}

// ErrNotSealed means a workflow carries no run sealed by this key.
var ErrNotSealed = errors.New("the workflow carries no CD run sealed by the task function")

// Open reads the run of the workflow namespace/name from its annotations, if and only if
// this key sealed it for that very workflow.
func (k Key) Open(namespace, name string, annotations map[string]string) (Run, error) {
	raw, seal := annotations[AnnotationRun], annotations[AnnotationSeal]
	if raw == "" || seal == "" {
		return Run{}, ErrNotSealed
	}
	want := k.seal(namespace, name, []byte(raw))
	if !hmac.Equal([]byte(seal), []byte(want)) {
		return Run{}, fmt.Errorf("%w: the seal does not match", ErrNotSealed)
	}
	var run Run
	if err := json.Unmarshal([]byte(raw), &run); err != nil {
		return Run{}, fmt.Errorf("%w: %v", ErrNotSealed, err)
	}
	return run, nil
}
