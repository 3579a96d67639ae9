package upstream

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/dwp-sre/dwp-sre/sse-router/api"
	"github.com/dwp-sre/dwp-sre/sse-router/hub"
)

// Subscribe implements Topic.
func (t *workflowLogTopic) Subscribe(ctx context.Context, s *hub.Subscription, j Join) error {
	select {
	case <-t.ready:
	case <-ctx.Done():
		return ctx.Err()
	}
	if j.Resume.Set && !j.Resume.Ended {
		return t.resume(ctx, s, j.Resume.Log)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	// Lines no longer kept are announced before the ones that are.
	var events []hub.Event
	if t.hasEvicted {
		events = append(events, errorEvent("", publicErrorf(api.CodeGap, "the first lines of this workflow's log are no longer kept"), true))
	}
	// Workflow logs take no follow parameter: they are always followed.
	t.joinLinesLocked(s, append(events, t.linesFrom(0)...), true)
	return nil
}

// resume attaches s after the line at after. Positions depend on the lines only, so
// after may come from a topic that is gone: this one may not have read that far yet
// (s then waits for the lines after it), or may have dropped the lines after it from
// its ring (they are read again, from every pod's log).
func (t *workflowLogTopic) resume(ctx context.Context, s *hub.Subscription, after api.LogPos) error {
	t.mu.Lock()
	if !t.hasEvicted || !after.Less(t.evicted) {
		defer t.mu.Unlock()
		t.joinAfterLocked(s, nil, after)
		return nil
	}
	pods := slices.Clone(t.pods)
	t.mu.Unlock()

	missed, err := t.readSince(ctx, pods, after)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	reached := after
	if len(missed) > 0 {
		reached = missed[len(missed)-1].pos
	}
	events := make([]hub.Event, 0, len(missed)+1)
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case err != nil:
		t.metrics.Error(string(api.KindWorkflowLog))
		t.log.Warn("workflow log: missed lines could not be read", "namespace", t.ns, "workflow", t.name, "err", err)
		events = append(events, errorEvent(after.String(), publicErrorf(api.CodeGap, "some lines after this position could not be read"), true))
	case t.hasEvicted && reached.Less(t.evicted):
		// The ring moved on while the logs were read (a burst of lines).
		events = append(events, errorEvent(after.String(), publicErrorf(api.CodeGap, "the log grew faster than it could be read: some lines are missing"), true))
	}
	for _, l := range missed {
		events = append(events, encodeLogLine(l.logLine, l.pod, l.node, ""))
	}
	t.joinAfterLocked(s, events, reached)
	return nil
}

// joinAfterLocked delivers events and then attaches s after the line at reached: with
// the ring's lines after it when this topic has published that far, or else once it
// publishes lines after it.
func (t *workflowLogTopic) joinAfterLocked(s *hub.Subscription, events []hub.Event, reached api.LogPos) {
	if t.end != nil || (t.hasLast && !t.last.Less(reached)) {
		kept, _ := t.linesAfter(reached)
		t.joinLinesLocked(s, append(events, kept...), true)
		return
	}
	if len(events) > 0 && !s.Deliver(hub.NewMessage(false, events...)) {
		return
	}
	t.waitLocked(s, reached)
}

// mergedLine is a line of the merged log with its pod.
type mergedLine struct {
	logLine
	pod, node string
}

// readSince reads the logs of pods from after's second on, merges them and returns the
// lines after after, positioned as publish positions them. Reading from the start of
// the second (the API's resolution) lets the lines of after's instant be ranked again.
func (t *workflowLogTopic) readSince(ctx context.Context, pods []podRef, after api.LogPos) ([]mergedLine, error) {
	since := after.Time()
	var (
		merge merger
		errs  []error
	)
	read := map[string]bool{}
	for _, p := range pods {
		// A pod recreated under the same name was followed twice; its log is read once.
		if read[p.name] {
			continue
		}
		read[p.name] = true
		t.metrics.Request(string(api.KindWorkflowLog), "fetch")
		lines, err := fetchLog(ctx, t.cs, t.ns, p.name, logRequest{container: t.container, since: &since}, nil)
		if err != nil {
			// A container not started yet has no lines to miss; a pod deleted since
			// took its lines with it, which the subscriber is told of.
			if _, waiting, _ := logProblem(err); !waiting {
				errs = append(errs, fmt.Errorf("pod %s: %w", p.name, err))
			}
			continue
		}
		merge.add(podLines{pod: p.name, node: p.node, lines: lines}, since)
	}
	lines, meta := merge.take(true, nil, since, t.opts)
	var (
		out     []mergedLine
		prev    api.LogPos
		hasPrev bool
	)
	for i, l := range lines {
		l.pos = nextPos(l.time.UnixNano(), prev, hasPrev)
		prev, hasPrev = l.pos, true
		if after.Less(l.pos) {
			out = append(out, mergedLine{logLine: l, pod: meta[i].pod, node: meta[i].node})
		}
	}
	if len(errs) > 0 {
		return out, fmt.Errorf("reading the pods' logs again: %w", errors.Join(errs...))
	}
	return out, nil
}
