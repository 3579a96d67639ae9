package controlplane

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// kwok runs no containers, so no Argo executor runs in a workflow pod either. The launcher
// plays the executor's part for them, as kwok plays the kubelet's: each step pod gets a log
// (what its main container would have printed, served by kwok), and once the step has run
// its log is archived the way Argo's wait container does it — uploaded to the artifact
// repository at <archiveLocation key>/main.log and recorded in a WorkflowTaskResult with
// the main-logs artifact — before the pod is marked for kwok to complete (Stage
// dwp-workflow-pod-complete). Reporting before completion is the executor's own order: the
// controller sees the result before the node ends, so it never waits for one.
const (
	labelWorkflow        = "workflows.argoproj.io/workflow"
	labelOutputsReported = "workflows.argoproj.io/report-outputs-completed"
	annotNodeID          = "workflows.argoproj.io/node-id"
	annotNodeName        = "workflows.argoproj.io/node-name"
	// annotKeepRunning holds a pod Running until removed (tests follow live logs).
	annotKeepRunning = "dwp.io/keep-running"
	// annotStepReported marks a pod whose step was reported; kwok completes only those.
	annotStepReported = "dwp.io/step-reported"
	// envTemplate is where Argo's controller gives the executor its template (the init
	// container's environment, or a ConfigMap named after the pod when too large).
	envTemplate          = "ARGO_TEMPLATE"
	envTemplateOffloaded = "offloaded"
	waitContainer        = "wait"
	// stepRunTime is how long a step "runs" before it is reported and completed.
	stepRunTime = time.Second
)

var (
	kwokLogsGVR    = schema.GroupVersionResource{Group: "kwok.x-k8s.io", Version: "v1alpha1", Resource: "logs"}
	taskResultsGVR = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "workflowtaskresults"}
)

// stepTemplate is what the executor reads of the template it is given.
type stepTemplate struct {
	Name            string `json:"name"`
	ArchiveLocation *struct {
		ArchiveLogs *bool `json:"archiveLogs"`
		S3          *struct {
			Bucket string `json:"bucket"`
			Key    string `json:"key"`
		} `json:"s3"`
	} `json:"archiveLocation"`
}

// logsKey is where the template archives a container's log, or "" when it archives none.
func (t stepTemplate) logsKey(container string) (bucket, key string) {
	loc := t.ArchiveLocation
	if loc == nil || loc.ArchiveLogs == nil || !*loc.ArchiveLogs || loc.S3 == nil || loc.S3.Key == "" {
		return "", ""
	}
	return loc.S3.Bucket, path.Join(loc.S3.Key, container+".log")
}

type executor struct {
	cs     kubernetes.Interface
	dyn    dynamic.Interface
	store  *objectStore
	logDir string
	keys   objectStoreKeys
	logger *slog.Logger
	pods   cacheLister[*corev1.Pod]
	nss    cacheLister[*corev1.Namespace]
	steps  *loop
	wg     sync.WaitGroup
}

// startExecutor starts the executor's part for workflow pods and the controller that keeps
// the artifact repository's Secret in every namespace (argo-server reads it there, with the
// reader's own token). Both stop when ctx ends; wait returns once they have.
func startExecutor(ctx context.Context, cs kubernetes.Interface, dyn dynamic.Interface, store *objectStore, keys objectStoreKeys, logDir string, logger *slog.Logger) (wait func(), err error) {
	x := &executor{cs: cs, dyn: dyn, store: store, keys: keys, logDir: logDir, logger: logger}
	podFactory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.LabelSelector = labelWorkflow
	}))
	nsFactory := informers.NewSharedInformerFactory(cs, 0)
	podInf := podFactory.Core().V1().Pods().Informer()
	nsInf := nsFactory.Core().V1().Namespaces().Informer()
	x.pods = cacheLister[*corev1.Pod]{podInf.GetStore()}
	x.nss = cacheLister[*corev1.Namespace]{nsInf.GetStore()}
	x.steps = newLoop(ctx, "workflow step executor", logger, x.syncPod)
	secrets := newLoop(ctx, "artifact repository secret", logger, x.syncNamespace)
	if _, err := podInf.AddEventHandler(x.steps.handler()); err != nil {
		return nil, err
	}
	if _, err := nsInf.AddEventHandler(secrets.handler()); err != nil {
		return nil, err
	}
	podFactory.Start(ctx.Done())
	nsFactory.Start(ctx.Done())
	for _, l := range []*loop{x.steps, secrets} {
		x.wg.Add(1)
		go func() {
			defer x.wg.Done()
			if !cache.WaitForCacheSync(ctx.Done(), podInf.HasSynced, nsInf.HasSynced) {
				return
			}
			l.run(ctx)
		}()
	}
	return func() {
		x.wg.Wait()
		podFactory.Shutdown()
		nsFactory.Shutdown()
	}, nil
}

// syncNamespace keeps the artifact repository's Secret in a namespace.
func (x *executor) syncNamespace(ctx context.Context, name string) error {
	ns, ok := x.nss.get(name)
	if !ok || ns.DeletionTimestamp != nil || ns.Status.Phase == corev1.NamespaceTerminating {
		return nil
	}
	want := map[string][]byte{"accessKey": []byte(x.keys.AccessKey), "secretKey": []byte(x.keys.SecretKey)}
	secrets := x.cs.CoreV1().Secrets(name)
	cur, err := secrets.Get(ctx, artifactSecret, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = secrets.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: artifactSecret, Labels: map[string]string{"app.kubernetes.io/managed-by": "dwp-cluster"}},
			Data:       want,
		}, metav1.CreateOptions{FieldManager: "dwp-cluster"})
		if apierrors.IsAlreadyExists(err) || apierrors.IsForbidden(err) {
			// Raced with another writer, or the namespace began terminating: either way
			// the next event decides.
			return nil
		}
		return err
	}
	if err != nil {
		return err
	}
	if bytes.Equal(cur.Data["accessKey"], want["accessKey"]) && bytes.Equal(cur.Data["secretKey"], want["secretKey"]) {
		return nil
	}
	cur.Data = want
	_, err = secrets.Update(ctx, cur, metav1.UpdateOptions{FieldManager: "dwp-cluster"})
	return err
}

// syncPod gives a workflow pod its logs, and reports its step once it has run.
func (x *executor) syncPod(ctx context.Context, key string) error {
	pod, ok := x.pods.get(key)
	if !ok || pod.DeletionTimestamp != nil || pod.Annotations[annotStepReported] != "" {
		return nil
	}
	files, err := x.ensureLogs(ctx, pod)
	if err != nil {
		return err
	}
	if pod.Status.Phase != corev1.PodRunning || pod.Annotations[annotKeepRunning] != "" {
		return nil
	}
	if left := stepRunTime - time.Since(runningSince(pod)); left > 0 {
		x.steps.queue.AddAfter(key, left)
		return nil
	}
	if err := x.report(ctx, pod, files); err != nil {
		return fmt.Errorf("report step %s: %w", key, err)
	}
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:"true"}}}`, annotStepReported)
	_, err = x.cs.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{FieldManager: "dwp-cluster"})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// runningSince is when the pod became ready (kwok starts every container at once).
func runningSince(pod *corev1.Pod) time.Time {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			return c.LastTransitionTime.Time
		}
	}
	if pod.Status.StartTime != nil {
		return pod.Status.StartTime.Time
	}
	return pod.CreationTimestamp.Time
}

// mainContainers are the pod's containers other than Argo's wait container.
func mainContainers(pod *corev1.Pod) []corev1.Container {
	var out []corev1.Container
	for _, c := range pod.Spec.Containers {
		if c.Name != waitContainer {
			out = append(out, c)
		}
	}
	return out
}

// ensureLogs returns each main container's log file, making the kwok Logs object and the
// files (with what the step prints) when the pod has none yet. A Logs object made by
// someone else (tests write their own logs) is used as it is.
func (x *executor) ensureLogs(ctx context.Context, pod *corev1.Pod) (map[string]string, error) {
	now := time.Now().UTC()
	return ensureKwokLogs(ctx, x.dyn, x.logDir, pod, mainContainers(pod), nil, func(file string, c corev1.Container) error {
		// A file already there was written for this pod (by a test, before the pod ran):
		// it is the log.
		f, err := os.OpenFile(file, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if errors.Is(err, os.ErrExist) {
			return nil
		}
		if err != nil {
			return err
		}
		w := bufio.NewWriter(f)
		for i, line := range stepOutput(pod, c) {
			fmt.Fprintf(w, "%s stdout F %s\n", now.Add(time.Duration(i)*time.Millisecond).Format(time.RFC3339Nano), line)
		}
		err = w.Flush()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	})
}

// logFiles reads a kwok Logs object: container → log file.
func logFiles(obj *unstructured.Unstructured) map[string]string {
	files := map[string]string{}
	entries, _, _ := unstructured.NestedSlice(obj.Object, "spec", "logs")
	for _, e := range entries {
		m, _ := e.(map[string]any)
		file, _ := m["logsFile"].(string)
		containers, _ := m["containers"].([]any)
		for _, c := range containers {
			if name, ok := c.(string); ok && file != "" {
				files[name] = file
			}
		}
	}
	return files
}

// stepOutput is what a step's container prints here: the command it runs, made from the
// pod (Argo runs the template's command behind its own executor: what follows "--").
func stepOutput(pod *corev1.Pod, c corev1.Container) []string {
	step := pod.Annotations[annotNodeName]
	if step == "" {
		step = pod.Name
	}
	cmd := c.Command
	if len(cmd) > 0 && path.Base(cmd[0]) == "argoexec" {
		cmd = nil
		for i, a := range c.Command {
			if a == "--" {
				cmd = c.Command[i+1:]
				break
			}
		}
	}
	run := strings.TrimSpace(strings.Join(append(append([]string{}, cmd...), c.Args...), " "))
	lines := []string{fmt.Sprintf("step %s: container %s, image %s", step, c.Name, c.Image)}
	if run != "" {
		lines = append(lines, "+ "+run)
	}
	return append(lines, fmt.Sprintf("step %s: %s done", step, c.Name))
}

// report does what Argo's wait container does once the main containers exit: upload their
// logs when the template archives logs, and record the outputs in the node's
// WorkflowTaskResult, marked complete.
func (x *executor) report(ctx context.Context, pod *corev1.Pod, files map[string]string) error {
	nodeID := pod.Annotations[annotNodeID]
	owner := workflowOwner(pod)
	if nodeID == "" || owner == nil {
		return nil // not a pod of Argo's controller: nothing to report
	}
	tmpl, err := x.template(ctx, pod)
	if err != nil {
		return err
	}
	var artifacts []any
	for _, c := range mainContainers(pod) {
		bucket, key := tmpl.logsKey(c.Name)
		if key == "" {
			continue
		}
		content, err := containerOutput(files[c.Name])
		if err != nil {
			return err
		}
		if bucket == "" {
			bucket = x.store.bucket
		}
		if err := x.store.put(ctx, bucket, key, content, "text/plain"); err != nil {
			return err
		}
		artifacts = append(artifacts, map[string]any{"name": c.Name + "-logs", "s3": map[string]any{"key": key}})
	}
	result := map[string]any{}
	if len(artifacts) > 0 {
		result["outputs"] = map[string]any{"artifacts": artifacts}
	}
	labels := map[string]any{labelWorkflow: owner.Name, labelOutputsReported: "true"}
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1",
		"kind":       "WorkflowTaskResult",
		"metadata": map[string]any{
			"name": nodeID, "namespace": pod.Namespace, "labels": labels,
			"ownerReferences": []any{map[string]any{
				"apiVersion": owner.APIVersion, "kind": owner.Kind, "name": owner.Name, "uid": string(owner.UID),
			}},
		},
	}}
	for k, v := range result {
		obj.Object[k] = v
	}
	results := x.dyn.Resource(taskResultsGVR).Namespace(pod.Namespace)
	_, err = results.Create(ctx, obj, metav1.CreateOptions{FieldManager: "dwp-cluster"})
	if apierrors.IsAlreadyExists(err) {
		patch, merr := json.Marshal(map[string]any{"metadata": map[string]any{"labels": labels}, "outputs": result["outputs"]})
		if merr != nil {
			return merr
		}
		_, err = results.Patch(ctx, nodeID, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "dwp-cluster"})
	}
	if err != nil {
		return fmt.Errorf("task result %s: %w", nodeID, err)
	}
	x.logger.Debug("step reported", "pod", pod.Namespace+"/"+pod.Name, "node", nodeID, "logs", len(artifacts))
	return nil
}

func workflowOwner(pod *corev1.Pod) *metav1.OwnerReference {
	for i, o := range pod.OwnerReferences {
		if o.Kind == "Workflow" && strings.HasPrefix(o.APIVersion, "argoproj.io/") {
			return &pod.OwnerReferences[i]
		}
	}
	return nil
}

// template reads the template Argo's controller gave the pod's executor.
func (x *executor) template(ctx context.Context, pod *corev1.Pod) (stepTemplate, error) {
	var t stepTemplate
	raw := ""
	for _, c := range append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...) {
		for _, e := range c.Env {
			if e.Name == envTemplate && raw == "" {
				raw = e.Value
			}
		}
	}
	if raw == envTemplateOffloaded {
		cm, err := x.cs.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return t, fmt.Errorf("offloaded template: %w", err)
		}
		raw = cm.Data[envTemplate]
	}
	if raw == "" {
		return t, nil // no template: nothing archived, an empty result
	}
	if err := json.Unmarshal([]byte(raw), &t); err != nil {
		return t, fmt.Errorf("template of %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return t, nil
}

// containerOutput turns a CRI log file into what the container wrote: the kubelet's
// log without timestamps, as the executor saves it.
func containerOutput(file string) ([]byte, error) {
	if file == "" {
		return nil, nil
	}
	b, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	for _, line := range strings.SplitAfter(string(b), "\n") {
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			continue
		}
		// <time> <stream> <P|F> <text>
		parts := strings.SplitN(line, " ", 4)
		if len(parts) < 3 {
			continue
		}
		text := ""
		if len(parts) == 4 {
			text = parts[3]
		}
		out.WriteString(text)
		if parts[2] != "P" {
			out.WriteByte('\n')
		}
	}
	return out.Bytes(), nil
}
