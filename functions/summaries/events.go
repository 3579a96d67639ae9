package summaries

import (
	"context"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/dwp-sre/dwp-sre/internal/eventrouter"
	"github.com/dwp-sre/dwp-sre/internal/events"
)

// The handlers below answer an event that can never be applied (it does not follow the
// contract of internal/events) as invalid, so the broker does not redeliver it, and a
// failure of Redis as an error, so the broker does. Each applies the event with one
// script call: the whole update is atomic, and a duplicate or older event changes nothing.

func (f *Family) onPod(ctx context.Context, e event.Event) (*event.Event, error) {
	cluster, deleted, p, err := events.DecodePod(e)
	if err != nil {
		return nil, eventrouter.Invalid(err)
	}
	_, err = f.store.ApplyPod(ctx, cluster, deleted, p)
	return nil, err
}

func (f *Family) onWorkflow(ctx context.Context, e event.Event) (*event.Event, error) {
	cluster, deleted, w, err := events.DecodeWorkflow(e)
	if err != nil {
		return nil, eventrouter.Invalid(err)
	}
	_, err = f.store.ApplyWorkflow(ctx, cluster, deleted, w)
	return nil, err
}

func (f *Family) onApplication(ctx context.Context, e event.Event) (*event.Event, error) {
	cluster, deleted, a, err := events.DecodeApplication(e)
	if err != nil {
		return nil, eventrouter.Invalid(err)
	}
	_, err = f.store.ApplyApplication(ctx, cluster, deleted, a)
	return nil, err
}

func (f *Family) onAppSnapshot(ctx context.Context, e event.Event) (*event.Event, error) {
	cluster, s, err := events.DecodeAppSnapshot(e)
	if err != nil {
		return nil, eventrouter.Invalid(err)
	}
	_, err = f.store.ApplyAppSnapshot(ctx, cluster, s)
	return nil, err
}

func (f *Family) onClusterSnapshot(ctx context.Context, e event.Event) (*event.Event, error) {
	cluster, s, err := events.DecodeClusterSnapshot(e)
	if err != nil {
		return nil, eventrouter.Invalid(err)
	}
	_, err = f.store.ApplyClusterSnapshot(ctx, cluster, s)
	return nil, err
}
