package clustertest_test

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dwp-sre/dwp-sre/sandbox/clustertest"
)

// Must show: the plane plays Argo's executor, so a finished workflow's step logs are
// archived in the object store and read back through argo-server after the live workflow
// is gone, by a user who may view workflows there, and by no one else.
func TestArchivedStepLogsReadBackThroughArgoServer(t *testing.T) {
	env := clustertest.Get(t)
	ns := env.Namespace(t)
	env.Grant(t, ns, "carol", "view")
	start := time.Now()
	run := env.RunArchivedSteps(t, ns)
	t.Logf("2-step workflow Succeeded, archived and deleted in %s", time.Since(start).Round(100*time.Millisecond))

	carol, bob := env.Token(t, "carol"), env.Token(t, "bob")
	for node, want := range run.StepLogs {
		if !strings.Contains(want, "+ make ") {
			t.Errorf("step %s logged %q: not the step's command", node, want)
		}
		path := "/artifact-files/" + ns + "/archived-workflows/" + run.UID + "/" + node + "/outputs/main-logs"
		if code, got := env.ArgoServerGet(t, path, carol); code != 200 || got != want {
			t.Errorf("%s as carol (view): %d %q, want the pod's log %q", node, code, got, want)
		}
		if code, _ := env.ArgoServerGet(t, path, bob); code != 401 {
			t.Errorf("%s as bob (no rights): %d, want argo-server's 401", node, code)
		}
		// The live form has no archive fallback.
		if code, _ := env.ArgoServerGet(t, "/artifact-files/"+ns+"/workflows/"+run.Name+"/"+node+"/outputs/main-logs", carol); code == 200 {
			t.Errorf("%s read through the deleted live workflow", node)
		}
		code, _ := env.ArgoServerGet(t, "/artifacts-by-uid/"+run.UID+"/"+node+"/main-logs", carol)
		t.Logf("step %s: %d bytes archived; /artifacts-by-uid answers %d", node, len(want), code)
	}

	// The artifact repository's Secret is kept in every namespace (argo-server reads it
	// there with the reader's token).
	cs := env.AdminClientset(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := cs.CoreV1().Secrets(ns).Get(ctx, "argo-s3", metav1.GetOptions{})
	if err != nil || len(s.Data["accessKey"]) == 0 || len(s.Data["secretKey"]) == 0 {
		t.Fatalf("argo-s3 in %s: %v %v", ns, err, s)
	}
}
