package workflows

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	argofake "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned/fake"
	"github.com/julienschmidt/httprouter"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	kubefake "k8s.io/client-go/kubernetes/fake"
	metadatafake "k8s.io/client-go/metadata/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/dwp-sre/dwp-sre/functions/workflows/archive"
)

// fakeCluster is an API server made of fake clientsets. Tokens name users; a user may do
// everything in the namespaces listed in rights, and nothing elsewhere.
type fakeCluster struct {
	argo   *argofake.Clientset
	meta   *metadatafake.FakeMetadataClient
	rights map[string][]string // user → namespaces
	seq    atomic.Int64
}

func newFakeCluster(t testing.TB, rights map[string][]string, objs ...runtime.Object) *fakeCluster {
	t.Helper()
	fc := &fakeCluster{argo: argofake.NewSimpleClientset(objs...), rights: rights}
	fc.meta = metadatafake.NewSimpleMetadataClient(metadataScheme())
	for _, o := range objs {
		if wf, ok := o.(*wfv1.Workflow); ok {
			fc.addMeta(t, wf)
		}
	}
	// The fake tracker neither generates names nor keeps the metadata fake in step.
	fc.argo.PrependReactor("create", "workflows", func(a k8stesting.Action) (bool, runtime.Object, error) {
		wf := a.(k8stesting.CreateAction).GetObject().(*wfv1.Workflow)
		if wf.Name == "" {
			wf.Name = fmt.Sprintf("%s%05d", wf.GenerateName, fc.seq.Add(1))
		}
		wf.UID = types.UID("uid-" + wf.Name)
		wf.CreationTimestamp = metav1.Now()
		if err := fc.meta.Tracker().Add(partial(wf)); err != nil {
			return true, nil, err
		}
		return false, nil, nil
	})
	return fc
}

func (fc *fakeCluster) addMeta(t testing.TB, wf *wfv1.Workflow) {
	t.Helper()
	if err := fc.meta.Tracker().Add(partial(wf)); err != nil {
		t.Fatalf("metadata fake: %v", err)
	}
}

func partial(wf *wfv1.Workflow) *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{
		TypeMeta:   metav1.TypeMeta{APIVersion: "argoproj.io/v1alpha1", Kind: "Workflow"},
		ObjectMeta: *wf.ObjectMeta.DeepCopy(),
	}
}

// clientsFor gives the clients of a user: their actions outside their namespaces are
// forbidden, as RBAC would.
func (fc *fakeCluster) clientsFor(token string) (*Clients, error) {
	user := token
	allowed := func(ns string) bool {
		for _, n := range fc.rights[user] {
			if n == ns || n == "*" {
				return true
			}
		}
		return false
	}
	kube := kubefake.NewClientset()
	kube.PrependReactor("create", "selfsubjectreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		return true, &authenticationv1.SelfSubjectReview{Status: authenticationv1.SelfSubjectReviewStatus{
			UserInfo: authenticationv1.UserInfo{Username: "user:" + user + "@example.com"},
		}}, nil
	})
	kube.PrependReactor("create", "selfsubjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		r := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SelfSubjectAccessReview)
		r = r.DeepCopy()
		r.Status.Allowed = allowed(r.Spec.ResourceAttributes.Namespace)
		return true, r, nil
	})
	argo := &argofake.Clientset{}
	gate := func(a k8stesting.Action) (bool, runtime.Object, error) {
		ns := a.GetNamespace()
		if a.GetResource().Resource == "clusterworkflowtemplates" {
			ns = "*"
		}
		if ns == "*" && !allowed("*") || ns != "*" && !allowed(ns) {
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "argoproj.io", Resource: a.GetResource().Resource}, "", fmt.Errorf("user %q cannot %s in namespace %q", user, a.GetVerb(), ns))
		}
		return false, nil, nil
	}
	argo.AddReactor("*", "*", gate)
	argo.AddReactor("*", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		obj, err := fc.argo.Invokes(a, nil)
		return true, obj, err
	})
	meta := metadatafake.NewSimpleMetadataClient(metadataScheme())
	meta.Fake.ReactionChain = nil
	meta.AddReactor("*", "*", gate)
	meta.AddReactor("*", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		obj, err := fc.meta.Invokes(a, nil)
		return true, obj, err
	})
	return &Clients{Kube: kube, Argo: argo, Meta: meta}, nil
}

// metadataScheme lets the metadata fake hold workflows as PartialObjectMetadata.
func metadataScheme() *runtime.Scheme {
	s := metadatafake.NewTestScheme()
	metav1.AddMetaToScheme(s)
	gv := schema.GroupVersion{Group: "argoproj.io", Version: "v1alpha1"}
	s.AddKnownTypeWithName(gv.WithKind("Workflow"), &metav1.PartialObjectMetadata{})
	s.AddKnownTypeWithName(gv.WithKind("WorkflowList"), &metav1.PartialObjectMetadataList{})
	return s
}

func testConfig() Config {
	c, err := ParseConfig(map[string]string{})
	if err != nil {
		panic(err)
	}
	return c
}

// newTestFamily is a started family on the fake cluster.
func newTestFamily(fc *fakeCluster, arch archive.Archive) *Family {
	if arch == nil {
		arch = archive.Unconfigured{}
	}
	return &Family{
		cfg:     testConfig(),
		callers: newCallers(fc.clientsFor, time.Minute),
		service: &Clients{Argo: fc.argo, Meta: fc.meta},
		archive: arch,
		now:     func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) },
	}
}

func newRouter(f *Family) *httprouter.Router {
	r := httprouter.New()
	f.Routes(r)
	return r
}

type response struct {
	code   int
	header http.Header
	body   string
}

func do(t testing.TB, h http.Handler, method, target, token, body string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequestWithContext(context.Background(), method, target, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if method == http.MethodPost || method == http.MethodPut {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return response{code: rec.Code, header: rec.Header(), body: rec.Body.String()}
}

func template(ns, name string, params ...wfv1.Parameter) *wfv1.WorkflowTemplate {
	return &wfv1.WorkflowTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: wfv1.WorkflowSpec{
			Entrypoint: "main",
			Arguments:  wfv1.Arguments{Parameters: params},
			Templates: []wfv1.Template{
				{Name: "main", Container: nil},
				{Name: "other"},
			},
		},
	}
}

func workflow(ns, name string, created time.Time, phase wfv1.WorkflowPhase, labels map[string]string) *wfv1.Workflow {
	l := map[string]string{}
	for k, v := range labels {
		l[k] = v
	}
	if phase != "" {
		l[LabelPhase] = string(phase)
	}
	if phase.Completed() {
		l[LabelCompleted] = "true"
	}
	return &wfv1.Workflow{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, UID: types.UID("uid-" + name), CreationTimestamp: metav1.NewTime(created), Labels: l},
		Status: wfv1.WorkflowStatus{
			Phase: phase,
			Nodes: wfv1.Nodes{name: wfv1.NodeStatus{ID: name, Name: name, Phase: wfv1.NodeRunning}},
		},
	}
}
