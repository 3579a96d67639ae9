package integration

import (
	"context"
	"encoding/json"
	"net/url"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	argoclient "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dwp-sre/dwp-sre/sandbox/clustertest"
	"github.com/dwp-sre/dwp-sre/sse-router/api"
	"github.com/dwp-sre/dwp-sre/sse-router/server"
	"github.com/dwp-sre/dwp-sre/sse-router/sse"
)

// Must show: deleting a user's RoleBinding ends each of their open streams (every kind,
// and each subscription of a multiplexed one) within the configured interval, with a 403
// `error` event; another user's streams go on.
func TestRevokedRoleBindingEndsOpenStreams(t *testing.T) {
	t.Parallel()
	env := clustertest.Get(t)
	ns := env.Namespace(t)
	const interval = 5 * time.Second
	r := startRouter(t, env, func(c *server.Config) { c.ReauthorizeInterval = interval })
	pl := env.PodLog(t, ns, "web-1", "main")
	appendLines(t, pl, "x", 0, 1)
	runningPod(t, env, ns, "web-1", "web")
	// A workflow that waits (a suspend step) keeps its streams open.
	argo, err := argoclient.NewForConfig(env.Admin)
	if err != nil {
		t.Fatal(err)
	}
	wf := "hold-" + randomSuffix()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := argo.ArgoprojV1alpha1().Workflows(ns).Create(ctx, &wfv1.Workflow{
		ObjectMeta: metav1.ObjectMeta{Name: wf, Labels: map[string]string{"app": "web"}},
		Spec: wfv1.WorkflowSpec{Entrypoint: "main", Templates: []wfv1.Template{{
			Name: "main", Suspend: &wfv1.SuspendTemplate{},
		}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	env.Grant(t, ns, "carol", "view")
	env.Grant(t, ns, "bob", "view")

	streams := []string{
		"namespaces/" + ns + "/pods?app=web",
		"namespaces/" + ns + "/pods/web-1/log?container=main",
		"namespaces/" + ns + "/workflows?app=web",
		"namespaces/" + ns + "/workflows/" + wf,
		"namespaces/" + ns + "/workflows/" + wf + "/log",
		"namespaces/" + ns + "/events?kind=Pod&name=web-1",
		"namespaces/" + ns + "/metrics/pods?app=web",
		"namespaces/" + ns + "/apps",
		"namespaces/" + ns + "/apps/web/application",
	}
	mux := "mux?" + url.Values{"subscribe": {"p:namespaces/" + ns + "/pods", "l:namespaces/" + ns + "/pods/web-1/log?container=main"}}.Encode()
	open := func(user string) map[string]*client {
		tok := env.Token(t, user)
		cs := map[string]*client{}
		for _, s := range append(streams, mux) {
			cs[s] = r.open(t, s, tok, "")
		}
		return cs
	}
	carol, bob := open("carol"), open("bob")
	// Every stream is under way (the multiplexed one has said which session it is).
	time.Sleep(time.Second)

	admin := env.AdminClientset(t)
	if err := admin.RbacV1().RoleBindings(ns).Delete(ctx, "carol-view", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	// When the API server's authorizer itself says no (it learns of the deletion by watch).
	for {
		sar, err := admin.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: "carol", ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: ns, Verb: "list", Resource: "pods"}}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !sar.Status.Allowed {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("the authorizer denies %s after the deletion", time.Since(deleted).Round(time.Millisecond))

	type ended struct {
		what string
		took time.Duration
		err  string
	}
	results := make(chan ended)
	forbidden := func(ev sse.Event) (api.ErrorPayload, bool) {
		var p api.ErrorPayload
		if json.Unmarshal([]byte(ev.Data), &p) != nil || p.Type != api.EventError {
			return p, false
		}
		return p, p.Status == 403
	}
	// Each plain stream: a 403 error event, then the end. The multiplexed one: a 403
	// error under each subscription's name.
	wait := func(what string, c *client, subs map[string]bool) {
		deadline := time.After(interval + 10*time.Second)
		for {
			select {
			case ev, ok := <-c.events:
				if !ok {
					results <- ended{what, time.Since(deleted), "closed without a 403 error event"}
					return
				}
				if ev.IsComment {
					continue
				}
				p, is403 := forbidden(ev)
				if !is403 {
					continue
				}
				if p.Code != api.CodeForbidden || p.Retrying {
					results <- ended{what, time.Since(deleted), "error event " + ev.Data}
					return
				}
				took := time.Since(deleted)
				if subs != nil {
					delete(subs, ev.Type)
					if len(subs) > 0 {
						continue
					}
					results <- ended{what, took, ""}
					return
				}
				// Nothing after it: the stream ends.
				select {
				case ev, ok := <-c.events:
					if ok && !ev.IsComment {
						results <- ended{what, took, "event after the 403: " + ev.Type}
						return
					}
				case <-time.After(2 * time.Second):
					results <- ended{what, took, "not closed after the 403"}
					return
				}
				results <- ended{what, took, ""}
				return
			case <-deadline:
				results <- ended{what, time.Since(deleted), "still open"}
				return
			}
		}
	}
	for _, s := range streams {
		go wait(s, carol[s], nil)
	}
	go wait(mux, carol[mux], map[string]bool{"p": true, "l": true})
	var slowest time.Duration
	for range len(streams) + 1 {
		e := <-results
		if e.err != "" {
			t.Errorf("carol's %s after %s: %s", e.what, e.took.Round(time.Millisecond), e.err)
			continue
		}
		slowest = max(slowest, e.took)
		t.Logf("carol's %s ended %s after the deletion", e.what, e.took.Round(time.Millisecond))
	}
	// The authorizer's own delay is the API server's, not the router's: allow 1 s of it.
	if slowest > interval+time.Second {
		t.Errorf("the slowest stream ended %s after the deletion; interval %s", slowest, interval)
	}
	t.Logf("every stream of carol's ended within %s (interval %s)", slowest.Round(time.Millisecond), interval)

	// Bob's streams are untouched: none ended or got a 403, and a change still reaches him.
	for s, c := range bob {
		for drained := false; !drained; {
			select {
			case ev, ok := <-c.events:
				if !ok {
					t.Fatalf("bob's %s closed", s)
				}
				if _, is403 := forbidden(ev); is403 {
					t.Fatalf("bob's %s got %s", s, ev.Data)
				}
			default:
				drained = true
			}
		}
	}
	label(t, env, ns, "web-1", "seen", "yes")
	bob[streams[0]].until(t, 10*time.Second, "the pod change", func(ev sse.Event) bool { return ev.Type == "modified" })
	bob[mux].until(t, 10*time.Second, "the pod change on the multiplexed stream", func(ev sse.Event) bool { return ev.Type == "p" })
}
