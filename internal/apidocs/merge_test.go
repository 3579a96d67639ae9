package apidocs

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestMerge(t *testing.T) {
	base := Part{"base", []byte("openapi: 3.0.3\ninfo: {title: t, version: v1}\npaths:\n  /a: {get: {responses: {'200': {description: ok}}}}\ncomponents:\n  schemas:\n    A: {type: string}\n")}
	tests := []struct {
		name  string
		parts []Part
		err   string
	}{
		{"paths and components", []Part{base, {"b", []byte(`{"paths":{"/b":{}},"components":{"schemas":{"B":{}},"responses":{"R":{}}}}`)}}, ""},
		{"a path twice", []Part{base, {"b", []byte("paths: {/a: {}}")}}, `paths "/a" is defined twice`},
		{"a schema twice", []Part{base, {"b", []byte("components: {schemas: {A: {}}}")}}, `schemas "A" is defined twice`},
		{"another member", []Part{base, {"b", []byte("info: {title: x}")}}, "only paths and components"},
		{"not YAML", []Part{base, {"b", []byte("paths: [")}}, "OpenAPI of b"},
		{"not an object", []Part{base, {"b", []byte("paths: 3")}}, "paths is not an object"},
		{"an empty part", []Part{base, {"b", nil}}, "not an object"},
		{"nothing", nil, "no OpenAPI document"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Merge(tt.parts...)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var doc struct {
				Paths      map[string]any
				Components map[string]map[string]any
			}
			if err := json.Unmarshal(got, &doc); err != nil {
				t.Fatal(err)
			}
			if len(doc.Paths) != 2 || len(doc.Components["schemas"]) != 2 || len(doc.Components["responses"]) != 1 {
				t.Fatalf("merged %s", got)
			}
		})
	}
}
