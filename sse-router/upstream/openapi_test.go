package upstream

import (
	"testing"

	"github.com/dwp-sre/dwp-sre/internal/events"
	"github.com/dwp-sre/dwp-sre/sse-router/api/apitest"
)

// The payloads the topics send have the members the router's OpenAPI document gives them.
func TestOpenAPIPayloads(t *testing.T) {
	doc := apitest.Doc(t)
	for _, tt := range []struct {
		schema string
		v      any
	}{
		{"PodList", listPayload{}},
		{"WorkflowList", listPayload{}},
		{"EventList", listPayload{}},
		{"PodChange", objectPayload{}},
		{"WorkflowChange", objectPayload{}},
		{"EventChange", objectPayload{}},
		{"LogLine", logLinePayload{}},
		{"Metrics", metricsPayload{}},
		{"PodUsage", PodUsage{}},
		{"Usage", Usage{}},
		{"MetricsHistory", historyPayload{}},
		{"PodHistory", PodHistory{}},
		{"UsagePoint", UsagePoint{}},
		{"AppChange", appPayload{}},
		{"AppSummary", events.AppSummary{}},
		{"ApplicationState", applicationPayload{}},
		{"ApplicationView", ApplicationView{}},
	} {
		t.Run(tt.schema, func(t *testing.T) { apitest.CheckFields(t, doc, tt.schema, tt.v) })
	}
}
