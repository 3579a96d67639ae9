package upstream

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/redis/go-redis/v9"

	"github.com/dwp-sre/dwp-sre/internal/events"
	"github.com/dwp-sre/dwp-sre/internal/summarystore"
)

// SummaryApps serves the app summaries the task function keeps in Redis
// (internal/summarystore): a namespace's summaries, then the changes published on the
// summary channel.
type SummaryApps struct {
	store *summarystore.Store
	// names maps the router's cluster names (kubeconfig contexts) to the names the
	// watcher gives them (its DWP_CLUSTER_NAME); a cluster not listed keeps its name.
	names map[string]string
}

// NewSummaryApps serves the summaries kept in rdb under the key prefix (the task
// function's DWP_REDIS_PREFIX).
func NewSummaryApps(rdb redis.UniversalClient, prefix string, names map[string]string) *SummaryApps {
	return &SummaryApps{store: summarystore.New(rdb, prefix), names: names}
}

func (a *SummaryApps) summaryCluster(cluster string) string {
	if n, ok := a.names[cluster]; ok {
		return n
	}
	return cluster
}

// Snapshot implements AppsSource.
func (a *SummaryApps) Snapshot(ctx context.Context, cluster, namespace string) ([]AppChange, error) {
	m, err := a.store.Summaries(ctx, a.summaryCluster(cluster), namespace)
	if err != nil {
		return nil, err
	}
	list := m[namespace]
	sort.Slice(list, func(i, j int) bool { return list[i].App < list[j].App })
	out := make([]AppChange, 0, len(list))
	for _, s := range list {
		b, err := json.Marshal(s)
		if err != nil {
			return nil, fmt.Errorf("summary of %s: %w", s.App, err)
		}
		out = append(out, AppChange{App: s.App, Summary: b})
	}
	return out, nil
}

// Watch implements AppsSource.
func (a *SummaryApps) Watch(ctx context.Context, cluster, namespace string, ready func(), onChange func(AppChange)) error {
	return a.store.Watch(ctx, a.summaryCluster(cluster), namespace, ready, func(c events.SummaryChange) error {
		ch := AppChange{App: c.App}
		if c.Summary != nil {
			var err error
			if ch.Summary, err = json.Marshal(c.Summary); err != nil {
				return fmt.Errorf("summary of %s: %w", c.App, err)
			}
		}
		onChange(ch)
		return nil
	})
}
