package archive

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/dwp-sre/dwp-sre/internal/problem"
)

// Postgres reads the archive tables of Argo's workflow-controller (persist/sqldb of
// argo-workflows v3.7): argo_archived_workflows (clustername, instanceid, uid, name,
// namespace, phase, startedat, finishedat, creationtimestamp, workflow as JSON) and
// argo_archived_workflows_labels (clustername, uid, name, value). Postgres knows nothing
// of users, so the caller's rights on the namespace are checked first.
type Postgres struct {
	pool        *pgxpool.Pool
	clusterName string
	instanceID  string
}

// NewPostgres opens a pool on dsn (connecting lazily, at the first query) that reads the
// rows of one cluster and controller instance.
func NewPostgres(ctx context.Context, dsn, clusterName, instanceID string) (*Postgres, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// The DSN may hold a password: name the problem without echoing it.
		return nil, errors.New("archive DSN is not a valid Postgres connection string")
	}
	cfg.MaxConns = 4
	cfg.MaxConnIdleTime = time.Minute
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("archive pool: %w", err)
	}
	return &Postgres{pool: pool, clusterName: clusterName, instanceID: instanceID}, nil
}

// Close closes the pool.
func (p *Postgres) Close() { p.pool.Close() }

// Argo replaces NUL escapes in the JSON it stores in Postgres (which rejects them in jsonb)
// with this marker; reading puts them back.
const postgresNullReplacement = "ARGO_POSTGRES_NULL_REPLACEMENT"

// summaryJSON builds, in the database, a workflow object holding only what a summary
// needs, so status.nodes never leaves Postgres in a list.
const summaryJSON = `json_build_object(
	'metadata', json_build_object(
		'name', name, 'namespace', namespace, 'uid', uid,
		'creationTimestamp', to_char(creationtimestamp, 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
		'labels', workflow->'metadata'->'labels',
		'annotations', workflow->'metadata'->'annotations'),
	'spec', json_build_object(
		'entrypoint', workflow->'spec'->'entrypoint',
		'arguments', workflow->'spec'->'arguments',
		'serviceAccountName', workflow->'spec'->'serviceAccountName',
		'workflowTemplateRef', workflow->'spec'->'workflowTemplateRef',
		'shutdown', workflow->'spec'->'shutdown',
		'suspend', workflow->'spec'->'suspend'),
	'status', json_build_object(
		'phase', phase,
		'startedAt', workflow->'status'->'startedAt',
		'finishedAt', workflow->'status'->'finishedAt',
		'message', workflow->'status'->'message',
		'progress', workflow->'status'->'progress',
		'estimatedDuration', workflow->'status'->'estimatedDuration',
		'resourcesDuration', workflow->'status'->'resourcesDuration',
		'conditions', workflow->'status'->'conditions')
)::text`

// pgCursor is the decoded continue token: the position after the last item.
type pgCursor struct {
	StartedAt time.Time `json:"t"`
	UID       string    `json:"u"`
	Filter    string    `json:"f"`
}

func (q *Query) filterHash() string {
	keys := make([]string, 0, len(q.Labels))
	for k := range q.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00", q.Namespace, q.NamePrefix)
	for _, k := range keys {
		fmt.Fprintf(h, "%s=%s\x00", k, q.Labels[k])
	}
	phases := append([]string(nil), q.Phases...)
	sort.Strings(phases)
	fmt.Fprintf(h, "%s", strings.Join(phases, ","))
	return hex.EncodeToString(h.Sum(nil)[:8])
}

func badContinue(detail string) problem.Problem {
	return problem.BadRequest("the continue token is invalid", problem.FieldError{Field: "continue", Detail: detail})
}

// List implements Archive.
func (p *Postgres) List(ctx context.Context, c Caller, q Query) (Page, error) {
	if err := q.checkBefore(); err != nil {
		return Page{}, err
	}
	if err := checkAccess(ctx, c, "list", q.Namespace); err != nil {
		return Page{}, err
	}
	if q.Limit < 1 {
		q.Limit = 1
	}
	filter := q.filterHash()
	args := []any{p.clusterName, p.instanceID, q.Namespace}
	arg := func(v any) string { args = append(args, v); return fmt.Sprintf("$%d", len(args)) }
	var sql strings.Builder
	sql.WriteString(`SELECT uid, startedat, ` + summaryJSON + ` FROM argo_archived_workflows w
WHERE clustername = $1 AND instanceid = $2 AND namespace = $3`)
	keys := make([]string, 0, len(q.Labels))
	for k := range q.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&sql, `
  AND EXISTS (SELECT 1 FROM argo_archived_workflows_labels l
              WHERE l.clustername = w.clustername AND l.uid = w.uid AND l.name = %s AND l.value = %s)`, arg(k), arg(q.Labels[k]))
	}
	if len(q.Phases) > 0 {
		fmt.Fprintf(&sql, "\n  AND phase = ANY(%s)", arg(q.Phases))
	}
	if q.NamePrefix != "" {
		// Callers pass names of [a-z0-9.-] only, so no LIKE wildcard needs escaping.
		fmt.Fprintf(&sql, "\n  AND name LIKE %s", arg(q.NamePrefix+"%"))
	}
	if q.Continue != "" {
		var cur pgCursor
		b, err := base64.RawURLEncoding.DecodeString(q.Continue)
		if err == nil {
			err = json.Unmarshal(b, &cur)
		}
		if err != nil || cur.UID == "" {
			return Page{}, badContinue("is not a token this list returned")
		}
		if cur.Filter != filter {
			return Page{}, badContinue("use it with the filters of the list that returned it")
		}
		fmt.Fprintf(&sql, "\n  AND (startedat, uid COLLATE \"C\") < (%s, %s)", arg(cur.StartedAt.UTC()), arg(cur.UID))
	}
	if b := q.Before; b != nil {
		// Argo records whole seconds; a position is one too.
		fmt.Fprintf(&sql, "\n  AND (startedat, uid COLLATE \"C\") < (%s, %s)", arg(b.StartedAt.Truncate(time.Second).UTC()), arg(b.UID))
	}
	// uid in byte order (not the database's collation): the order Position.Less and the
	// merged history use.
	fmt.Fprintf(&sql, "\nORDER BY startedat DESC, uid COLLATE \"C\" DESC LIMIT %s", arg(q.Limit+1))

	rows, err := p.pool.Query(ctx, sql.String(), args...)
	if err != nil {
		return Page{}, unavailable(ctx, err)
	}
	type row struct {
		uid       string
		startedAt time.Time
		doc       string
	}
	var got []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.uid, &r.startedAt, &r.doc); err != nil {
			rows.Close()
			return Page{}, unavailable(ctx, err)
		}
		got = append(got, r)
	}
	if err := rows.Err(); err != nil {
		return Page{}, unavailable(ctx, err)
	}
	var page Page
	if len(got) > q.Limit {
		got = got[:q.Limit]
		last := got[len(got)-1]
		b, _ := json.Marshal(pgCursor{StartedAt: last.startedAt.UTC(), UID: last.uid, Filter: filter})
		page.More = true
		if q.Before == nil {
			page.Continue = base64.RawURLEncoding.EncodeToString(b)
		}
	}
	page.Items = make([]wfv1.Workflow, 0, len(got))
	for _, r := range got {
		var wf wfv1.Workflow
		if err := json.Unmarshal([]byte(restoreNulls(r.doc)), &wf); err != nil {
			return Page{}, fmt.Errorf("archived workflow %s: %w", r.uid, err)
		}
		wf.Kind, wf.APIVersion = "Workflow", "argoproj.io/v1alpha1"
		page.Items = append(page.Items, wf)
	}
	return page, nil
}

// Get implements Archive.
func (p *Postgres) Get(ctx context.Context, c Caller, uid string) (*wfv1.Workflow, error) {
	var doc string
	err := p.pool.QueryRow(ctx, `SELECT workflow::text FROM argo_archived_workflows
WHERE clustername = $1 AND instanceid = $2 AND uid = $3`, p.clusterName, p.instanceID, uid).Scan(&doc)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, notFound(uid)
	}
	if err != nil {
		return nil, unavailable(ctx, err)
	}
	var wf wfv1.Workflow
	if err := json.Unmarshal([]byte(restoreNulls(doc)), &wf); err != nil {
		return nil, fmt.Errorf("archived workflow %s: %w", uid, err)
	}
	if err := checkAccess(ctx, c, "get", wf.Namespace); err != nil {
		return nil, err
	}
	wf.Kind, wf.APIVersion = "Workflow", "argoproj.io/v1alpha1"
	return &wf, nil
}

func checkAccess(ctx context.Context, c Caller, verb, ns string) error {
	if c.Can == nil {
		return problem.Forbidden("the caller's rights cannot be checked")
	}
	ok, err := c.Can(ctx, verb, ns)
	if err != nil {
		return err
	}
	if !ok {
		if verb == "list" {
			return forbiddenList(ns)
		}
		return problem.Forbidden(fmt.Sprintf("you may not %s workflows in namespace %s", verb, ns))
	}
	return nil
}

func restoreNulls(s string) string {
	if !strings.Contains(s, postgresNullReplacement) {
		return s
	}
	return strings.ReplaceAll(s, postgresNullReplacement, `\u0000`)
}

// unavailable logs a database failure and answers 503: the archive is an upstream.
func unavailable(ctx context.Context, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	slog.ErrorContext(ctx, "workflow archive query failed", "err", err)
	pr := problem.New(http.StatusServiceUnavailable, "the workflow archive is unavailable")
	pr.RetryAfter = 5
	return pr
}
