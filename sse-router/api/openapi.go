package api

import (
	_ "embed"
	"fmt"
	"sync"

	"sigs.k8s.io/yaml"
)

// OpenAPIPath is where the router serves its OpenAPI document.
const OpenAPIPath = "/api/v1/openapi.json"

//go:embed openapi.yaml
var openAPIYAML []byte

// OpenAPI is the router's OpenAPI 3.0 document (openapi.yaml) as JSON: every route, each
// stream's parameters, events and payload schemas, and its resume ids.
var OpenAPI = sync.OnceValues(func() ([]byte, error) {
	// YAMLToJSON resolves the document's anchors and merge keys, which JSON readers of
	// OpenAPI do not know.
	b, err := yaml.YAMLToJSON(openAPIYAML)
	if err != nil {
		return nil, fmt.Errorf("openapi.yaml: %w", err)
	}
	return b, nil
})
