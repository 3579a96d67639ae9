package controlplane

import (
	"context"
	"os"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
)

// ensureKwokLogs returns the log file of each of containers of pod, as kwok serves them:
// when the pod has no kwok Logs object yet, it makes one file per container under
// logDir/<namespace> (prepare writes what it should start with) and the Logs object,
// labelled with labels; one already there (the plane restarted, or a test made it) is
// used as it is.
func ensureKwokLogs(ctx context.Context, dyn dynamic.Interface, logDir string, pod *corev1.Pod, containers []corev1.Container,
	labels map[string]any, prepare func(file string, c corev1.Container) error) (map[string]string, error) {
	logs := dyn.Resource(kwokLogsGVR).Namespace(pod.Namespace)
	existing, err := logs.Get(ctx, pod.Name, metav1.GetOptions{})
	if err == nil {
		return logFiles(existing), nil
	}
	if !apierrors.IsNotFound(err) {
		return nil, err
	}
	dir := filepath.Join(logDir, pod.Namespace)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var entries []any
	for _, c := range containers {
		file := filepath.Join(dir, pod.Name+"_"+c.Name+".log")
		if err := prepare(file, c); err != nil {
			return nil, err
		}
		entries = append(entries, map[string]any{"containers": []any{c.Name}, "logsFile": file, "follow": true})
	}
	meta := map[string]any{"name": pod.Name, "namespace": pod.Namespace}
	if labels != nil {
		meta["labels"] = labels
	}
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "kwok.x-k8s.io/v1alpha1",
		"kind":       "Logs",
		"metadata":   meta,
		"spec":       map[string]any{"logs": entries},
	}}
	created, err := logs.Create(ctx, obj, metav1.CreateOptions{FieldManager: "dwp-cluster"})
	if apierrors.IsAlreadyExists(err) {
		created, err = logs.Get(ctx, pod.Name, metav1.GetOptions{})
	}
	if err != nil {
		return nil, err
	}
	return logFiles(created), nil
}
