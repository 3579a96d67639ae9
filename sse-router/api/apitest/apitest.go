// Package apitest checks the router's code against its OpenAPI document (api.OpenAPI),
// for tests: the document is valid OpenAPI 3.0, and payload types have exactly the JSON
// members their schemas describe.
package apitest

import (
	"context"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/dwp-sre/dwp-sre/sse-router/api"
)

// Doc loads the document and validates it, failing t when it is not valid OpenAPI 3.0.
func Doc(t testing.TB) *openapi3.T {
	t.Helper()
	b, err := api.OpenAPI()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := openapi3.NewLoader().LoadFromData(b)
	if err != nil {
		t.Fatalf("load the OpenAPI document: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("the OpenAPI document is not valid: %v", err)
	}
	return doc
}

// Schema is the schema components.schemas[name].
func Schema(t testing.TB, doc *openapi3.T, name string) *openapi3.Schema {
	t.Helper()
	ref, ok := doc.Components.Schemas[name]
	if !ok || ref.Value == nil {
		t.Fatalf("no schema %s in components.schemas", name)
	}
	return ref.Value
}

// Events is an operation's x-sse-events: event name → schema name.
func Events(t testing.TB, op *openapi3.Operation) map[string]string {
	t.Helper()
	raw, ok := op.Extensions["x-sse-events"]
	if !ok {
		return nil
	}
	b, err := json.Marshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: x-sse-events is not a map of event names to schema names: %v", op.OperationID, err)
	}
	return m
}

// CheckFields fails t unless the JSON members of v's type are exactly the properties of
// the schema name, the members the schema requires are ones v's type always writes, and
// so on for nested objects. Members of type any or json.RawMessage are not looked into.
func CheckFields(t testing.TB, doc *openapi3.T, name string, v any) {
	t.Helper()
	checkFields(t, name, Schema(t, doc, name), reflect.TypeOf(v))
}

type member struct {
	typ      reflect.Type
	optional bool
}

var (
	timeType = reflect.TypeFor[time.Time]()
	rawType  = reflect.TypeFor[json.RawMessage]()
)

func checkFields(t testing.TB, path string, s *openapi3.Schema, typ reflect.Type) {
	t.Helper()
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	props, required := properties(s)
	members := map[string]member{}
	jsonMembers(typ, members)
	for n, m := range members {
		p, ok := props[n]
		if !ok {
			t.Errorf("%s: %s.%s is not in the schema", path, typ.Name(), n)
			continue
		}
		checkNested(t, path+"."+n, p, m.typ)
	}
	for n := range props {
		if _, ok := members[n]; !ok {
			t.Errorf("%s: the schema's %s is not a member of %s", path, n, typ.Name())
		}
	}
	for _, n := range required {
		if m, ok := members[n]; ok && m.optional {
			t.Errorf("%s: %s is required by the schema but %s omits it when empty", path, n, typ.Name())
		}
	}
}

func checkNested(t testing.TB, path string, s *openapi3.Schema, typ reflect.Type) {
	t.Helper()
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	switch {
	case typ == timeType || typ == rawType || typ.Kind() == reflect.Interface:
	case typ.Kind() == reflect.Struct:
		checkFields(t, path, s, typ)
	case typ.Kind() == reflect.Slice && s.Items != nil && s.Items.Value != nil:
		checkNested(t, path+"[]", s.Items.Value, typ.Elem())
	}
}

// properties collects a schema's properties and required members, through allOf.
func properties(s *openapi3.Schema) (map[string]*openapi3.Schema, []string) {
	props := map[string]*openapi3.Schema{}
	required := slices.Clone(s.Required)
	for n, p := range s.Properties {
		if p.Value != nil {
			props[n] = p.Value
		}
	}
	for _, part := range s.AllOf {
		if part.Value == nil {
			continue
		}
		pp, req := properties(part.Value)
		for n, p := range pp {
			props[n] = p
		}
		required = append(required, req...)
	}
	return props, required
}

// jsonMembers lists the members encoding/json writes for a struct type.
func jsonMembers(typ reflect.Type, into map[string]member) {
	for i := range typ.NumField() {
		f := typ.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				jsonMembers(ft, into)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		optional := false
		for o := range strings.SplitSeq(opts, ",") {
			optional = optional || o == "omitempty" || o == "omitzero"
		}
		into[name] = member{typ: f.Type, optional: optional}
	}
}
