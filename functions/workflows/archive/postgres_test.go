package archive

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	"github.com/jackc/pgx/v5"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/dwp-sre/dwp-sre/internal/problem"
)

// The archive tables as argo-workflows v3.7.9's persist/sqldb migrations leave them on
// Postgres (the integration tests read the real controller's tables).
const argoSchema = `
CREATE TABLE argo_archived_workflows (
  uid varchar(128) NOT NULL,
  name varchar(256) NOT NULL,
  phase varchar(25) NOT NULL,
  namespace varchar(256) NOT NULL,
  workflow jsonb NOT NULL,
  startedat timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
  finishedat timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
  clustername varchar(64) NOT NULL,
  instanceid varchar(64) NOT NULL,
  creationtimestamp timestamp DEFAULT CURRENT_TIMESTAMP,
  PRIMARY KEY (clustername, uid)
);
CREATE INDEX argo_archived_workflows_i4 ON argo_archived_workflows (clustername, startedat);
CREATE TABLE argo_archived_workflows_labels (
  clustername varchar(64) NOT NULL,
  uid varchar(128) NOT NULL,
  name varchar(317) NOT NULL,
  value varchar(63) NOT NULL,
  PRIMARY KEY (clustername, uid, name),
  FOREIGN KEY (clustername, uid) REFERENCES argo_archived_workflows(clustername, uid) ON DELETE CASCADE
);`

// postgresURL is the local Postgres `make services` runs.
func postgresURL(db string) string {
	if u := os.Getenv("DWP_TEST_POSTGRES"); u != "" {
		return strings.Replace(u, "/postgres", "/"+db, 1)
	}
	return "postgres://postgres@127.0.0.1:5432/" + db + "?sslmode=disable"
}

// testDatabase creates a database with Argo's archive tables, dropped at the end.
func testDatabase(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, postgresURL("postgres"))
	if err != nil {
		t.Skipf("no Postgres at %s (run `make services`): %v", postgresURL("postgres"), err)
	}
	defer admin.Close(ctx)
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := "dwp_archive_test_" + hex.EncodeToString(b[:])
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), postgresURL("postgres"))
		if err == nil {
			_, _ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			c.Close(context.Background())
		}
	})
	conn, err := pgx.Connect(ctx, postgresURL(name))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, argoSchema); err != nil {
		t.Fatal(err)
	}
	return postgresURL(name)
}

// archiveRow writes wf as Argo's controller does.
func archiveRow(t *testing.T, conn *pgx.Conn, cluster, instance string, wf *wfv1.Workflow) {
	t.Helper()
	ctx := context.Background()
	doc, err := json.Marshal(wf)
	if err != nil {
		t.Fatal(err)
	}
	doc = []byte(strings.ReplaceAll(string(doc), `\u0000`, postgresNullReplacement))
	_, err = conn.Exec(ctx, `INSERT INTO argo_archived_workflows
(uid, name, phase, namespace, workflow, startedat, finishedat, clustername, instanceid, creationtimestamp)
VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)`,
		string(wf.UID), wf.Name, string(wf.Status.Phase), wf.Namespace, string(doc),
		wf.Status.StartedAt.UTC(), wf.Status.FinishedAt.UTC(), cluster, instance, wf.CreationTimestamp.UTC())
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range wf.Labels {
		if _, err := conn.Exec(ctx, `INSERT INTO argo_archived_workflows_labels (clustername, uid, name, value) VALUES ($1,$2,$3,$4)`,
			cluster, string(wf.UID), k, v); err != nil {
			t.Fatal(err)
		}
	}
}

func archived(ns, name string, started time.Time, phase wfv1.WorkflowPhase, labels map[string]string) *wfv1.Workflow {
	l := map[string]string{"workflows.argoproj.io/phase": string(phase)}
	for k, v := range labels {
		l[k] = v
	}
	return &wfv1.Workflow{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, UID: types.UID("uid-" + ns + "-" + name), Labels: l,
			CreationTimestamp: metav1.NewTime(started.Add(-time.Second))},
		Spec: wfv1.WorkflowSpec{Entrypoint: "main", Templates: []wfv1.Template{{Name: "main"}}},
		Status: wfv1.WorkflowStatus{
			Phase: phase, StartedAt: metav1.NewTime(started), FinishedAt: metav1.NewTime(started.Add(time.Minute)),
			Message: "done",
			Nodes:   wfv1.Nodes{name: wfv1.NodeStatus{ID: name, Name: name, Phase: wfv1.NodeSucceeded}},
		},
	}
}

// rights is a Caller allowed in the given namespaces.
func rights(namespaces ...string) Caller {
	return Caller{Token: "t", Can: func(_ context.Context, verb, ns string) (bool, error) {
		for _, n := range namespaces {
			if n == ns {
				return true, nil
			}
		}
		return false, nil
	}}
}

func TestPostgres(t *testing.T) {
	dsn := testDatabase(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)

	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var want []string // newest first, app shop in team
	for i := range 7 {
		phase := wfv1.WorkflowSucceeded
		if i%2 == 1 {
			phase = wfv1.WorkflowFailed
		}
		started := base.Add(time.Duration(i) * time.Minute)
		if i == 6 {
			started = base.Add(5 * time.Minute) // same start as shop-5: the uid decides
		}
		archiveRow(t, conn, "local", "", archived("team", fmt.Sprintf("shop-%d", i), started, phase, map[string]string{"app": "shop"}))
	}
	want = []string{"shop-6", "shop-5", "shop-4", "shop-3", "shop-2", "shop-1", "shop-0"}
	archiveRow(t, conn, "local", "", archived("team", "web-0", base, wfv1.WorkflowSucceeded, map[string]string{"app": "web"}))
	archiveRow(t, conn, "local", "", archived("other", "shop-x", base, wfv1.WorkflowSucceeded, map[string]string{"app": "shop"}))
	// Rows of another cluster and another controller instance are not ours.
	archiveRow(t, conn, "elsewhere", "", archived("team", "shop-far", base.Add(time.Hour), wfv1.WorkflowSucceeded, map[string]string{"app": "shop"}))
	archiveRow(t, conn, "local", "other-instance", archived("team", "shop-inst", base.Add(time.Hour), wfv1.WorkflowSucceeded, map[string]string{"app": "shop"}))
	nul := archived("team", "nul", base.Add(-time.Hour), wfv1.WorkflowSucceeded, map[string]string{"app": "nul"})
	nul.Status.Message = "a\x00b"
	archiveRow(t, conn, "local", "", nul)

	p, err := NewPostgres(ctx, dsn, "local", "")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	t.Run("pages newest first", func(t *testing.T) {
		var got []string
		q := Query{Namespace: "team", Labels: map[string]string{"app": "shop"}, Limit: 3}
		pages := 0
		for {
			page, err := p.List(ctx, rights("team"), q)
			if err != nil {
				t.Fatal(err)
			}
			pages++
			for _, wf := range page.Items {
				got = append(got, wf.Name)
				if wf.Status.Nodes != nil || wf.Spec.Templates != nil {
					t.Fatalf("%s: a summary with nodes or templates", wf.Name)
				}
				if wf.Status.Message != "done" || wf.Status.StartedAt.IsZero() || wf.Labels["app"] != "shop" || wf.Spec.Entrypoint != "main" || wf.CreationTimestamp.IsZero() {
					t.Fatalf("summary %+v", wf)
				}
			}
			if page.Continue == "" {
				break
			}
			q.Continue = page.Continue
		}
		if pages != 3 || strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("%d pages %v, want %v", pages, got, want)
		}
	})

	t.Run("pages by position", func(t *testing.T) {
		wfs := tiedWorkflows("ties")
		for _, wf := range wfs {
			archiveRow(t, conn, "local", "", wf)
		}
		checkPagingByPosition(t, p, rights("ties"), "ties", wantOrder(wfs), positionsOf(wfs))
	})

	t.Run("filters", func(t *testing.T) {
		cases := []struct {
			q    Query
			want string
		}{
			{Query{Namespace: "team", Phases: []string{"Failed"}, Limit: 10}, "shop-5,shop-3,shop-1"},
			{Query{Namespace: "team", Labels: map[string]string{"app": "web"}, Limit: 10}, "web-0"},
			{Query{Namespace: "team", NamePrefix: "web", Limit: 10}, "web-0"},
			{Query{Namespace: "team", Labels: map[string]string{"app": "shop", "workflows.argoproj.io/phase": "Succeeded"}, Limit: 10}, "shop-6,shop-4,shop-2,shop-0"},
			{Query{Namespace: "other", Limit: 10}, "shop-x"},
			{Query{Namespace: "empty", Limit: 10}, ""},
		}
		for _, c := range cases {
			page, err := p.List(ctx, rights(c.q.Namespace), c.q)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, wf := range page.Items {
				got = append(got, wf.Name)
			}
			if strings.Join(got, ",") != c.want {
				t.Errorf("%+v: %v, want %s", c.q, got, c.want)
			}
		}
	})

	t.Run("rights", func(t *testing.T) {
		_, err := p.List(ctx, rights("other"), Query{Namespace: "team", Limit: 1})
		if pr, ok := problem.As(err); !ok || pr.Status != http.StatusForbidden {
			t.Fatalf("list without rights: %v", err)
		}
		if _, err := p.Get(ctx, rights("other"), "uid-team-shop-1"); err == nil {
			t.Fatal("get without rights")
		} else if pr, _ := problem.As(err); pr.Status != http.StatusForbidden {
			t.Fatalf("get without rights: %v", err)
		}
	})

	t.Run("bad continue", func(t *testing.T) {
		for _, tok := range []string{"garbage", "eyJ1IjoiIn0"} {
			_, err := p.List(ctx, rights("team"), Query{Namespace: "team", Limit: 1, Continue: tok})
			if pr, ok := problem.As(err); !ok || pr.Status != http.StatusBadRequest {
				t.Fatalf("%q: %v", tok, err)
			}
		}
		page, _ := p.List(ctx, rights("team"), Query{Namespace: "team", Limit: 1})
		_, err := p.List(ctx, rights("team"), Query{Namespace: "team", Labels: map[string]string{"app": "web"}, Limit: 1, Continue: page.Continue})
		if pr, ok := problem.As(err); !ok || pr.Status != http.StatusBadRequest {
			t.Fatalf("token with other filters: %v", err)
		}
	})

	t.Run("get", func(t *testing.T) {
		wf, err := p.Get(ctx, rights("team"), "uid-team-shop-1")
		if err != nil {
			t.Fatal(err)
		}
		if wf.Name != "shop-1" || wf.Status.Nodes == nil || wf.Kind != "Workflow" {
			t.Fatalf("%+v", wf)
		}
		wf, err = p.Get(ctx, rights("team"), "uid-team-nul")
		if err != nil || wf.Status.Message != "a\x00b" {
			t.Fatalf("NUL not restored: %q %v", wf.Status.Message, err)
		}
		_, err = p.Get(ctx, rights("team"), "uid-team-shop-far")
		if pr, ok := problem.As(err); !ok || pr.Status != http.StatusNotFound {
			t.Fatalf("another cluster's row: %v", err)
		}
	})

	t.Run("database down", func(t *testing.T) {
		down, err := NewPostgres(ctx, "postgres://postgres@127.0.0.1:1/x?sslmode=disable&connect_timeout=1", "local", "")
		if err != nil {
			t.Fatal(err)
		}
		defer down.Close()
		_, err = down.List(ctx, rights("team"), Query{Namespace: "team", Limit: 1})
		if pr, ok := problem.As(err); !ok || pr.Status != http.StatusServiceUnavailable {
			t.Fatalf("%v", err)
		}
	})
}
