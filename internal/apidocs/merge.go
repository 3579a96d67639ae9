package apidocs

import (
	"encoding/json"
	"fmt"

	"sigs.k8s.io/yaml"
)

// Part is one piece of a service's OpenAPI document (YAML or JSON): the first is the
// whole document's frame (info, tags, shared components), the others bring paths and
// components only.
type Part struct {
	// Name says where the part comes from, in errors.
	Name string
	Doc  []byte
}

// Merge joins parts into one JSON document. A later part that gives anything but paths
// and components, or defines a path or component an earlier one did, is an error: each
// operation and schema has one owner.
func Merge(parts ...Part) ([]byte, error) {
	if len(parts) == 0 {
		return nil, fmt.Errorf("no OpenAPI document to merge")
	}
	doc, err := yamlObject(parts[0])
	if err != nil {
		return nil, err
	}
	for _, p := range parts[1:] {
		part, err := yamlObject(p)
		if err != nil {
			return nil, err
		}
		for key, v := range part {
			switch key {
			case "paths":
				if err := mergeInto(doc, "paths", v, p.Name); err != nil {
					return nil, err
				}
			case "components":
				kinds, ok := v.(map[string]any)
				if !ok {
					return nil, fmt.Errorf("OpenAPI of %s: components is not an object", p.Name)
				}
				comps, _ := doc["components"].(map[string]any)
				if comps == nil {
					comps = map[string]any{}
					doc["components"] = comps
				}
				for kind, defs := range kinds {
					if err := mergeInto(comps, kind, defs, p.Name); err != nil {
						return nil, err
					}
				}
			default:
				return nil, fmt.Errorf("OpenAPI of %s: only paths and components may be given, not %s", p.Name, key)
			}
		}
	}
	return json.Marshal(doc)
}

func yamlObject(p Part) (map[string]any, error) {
	j, err := yaml.YAMLToJSON(p.Doc)
	if err != nil {
		return nil, fmt.Errorf("OpenAPI of %s: %w", p.Name, err)
	}
	var m map[string]any
	if err := json.Unmarshal(j, &m); err != nil {
		return nil, fmt.Errorf("OpenAPI of %s: %w", p.Name, err)
	}
	if m == nil {
		return nil, fmt.Errorf("OpenAPI of %s: not an object", p.Name)
	}
	return m, nil
}

// mergeInto adds the members of the object v to the object parent[key].
func mergeInto(parent map[string]any, key string, v any, from string) error {
	add, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("OpenAPI of %s: %s is not an object", from, key)
	}
	into, _ := parent[key].(map[string]any)
	if into == nil {
		into = map[string]any{}
		parent[key] = into
	}
	for name, def := range add {
		if _, dup := into[name]; dup {
			return fmt.Errorf("OpenAPI of %s: %s %q is defined twice", from, key, name)
		}
		into[name] = def
	}
	return nil
}
