package manifest

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/distribution/reference"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
)

// reader reads a run's parameters against its kind's table and collects every error.
type reader struct {
	kind Kind
	// values holds each parameter of the kind, trimmed, with its default applied.
	values map[string]string
	// failed names the parameters already reported: they read as unset after that, so that
	// one mistake makes one error.
	failed map[string]bool
	errs   []FieldError
}

// read applies the checks the table describes: unknown parameters, required ones, enums.
func read(kind Kind, params map[string]string) *reader {
	r := &reader{kind: kind, values: make(map[string]string), failed: make(map[string]bool)}
	for _, p := range parameters[kind] {
		v := strings.TrimSpace(params[p.Name])
		if v == "" {
			v = p.Default
		}
		r.values[p.Name] = v
		switch {
		case v == "" && p.Required:
			r.fail(p.Name, "required")
		case v != "" && p.Enum != nil && !slices.Contains(p.Enum, v):
			r.fail(p.Name, "must be one of "+strings.Join(p.Enum, ", "))
		}
	}
	var unknown []string
	for name := range params {
		if _, ok := r.values[name]; !ok && !CommonParameters[name] {
			unknown = append(unknown, name)
		}
	}
	slices.Sort(unknown)
	for _, name := range unknown {
		r.fail(name, fmt.Sprintf("not a parameter of %s runs", kind))
	}
	return r
}

// sortedErrors returns the errors in the order of the kind's table, unknown parameters last.
func (r *reader) sortedErrors() []FieldError {
	rank := func(name string) int {
		i := slices.IndexFunc(parameters[r.kind], func(p Parameter) bool { return p.Name == name })
		if i < 0 {
			return len(parameters[r.kind])
		}
		return i
	}
	errs := slices.Clone(r.errs)
	slices.SortStableFunc(errs, func(a, b FieldError) int { return cmp.Compare(rank(a.Field), rank(b.Field)) })
	return errs
}

func (r *reader) fail(name, detail string) {
	r.errs = append(r.errs, FieldError{Field: name, Detail: detail})
	r.failed[name] = true
}

// get returns the value of a parameter of the kind's table; "" when unset or reported.
func (r *reader) get(name string) string {
	v, ok := r.values[name]
	if !ok {
		panic(fmt.Sprintf("manifest: %s runs have no parameter %q", r.kind, name))
	}
	if r.failed[name] {
		return ""
	}
	return v
}

// int reads an integer in [lo, hi]; ok is false when it is unset or invalid.
func (r *reader) int(name string, lo, hi int) (n int, ok bool) {
	v := r.get(name)
	if v == "" {
		return 0, false
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		r.fail(name, fmt.Sprintf("must be an integer from %d to %d", lo, hi))
		return 0, false
	}
	return n, true
}

// quantity reads a resource quantity greater than zero.
func (r *reader) quantity(name string) (q resource.Quantity, ok bool) {
	v := r.get(name)
	if v == "" {
		return q, false
	}
	q, err := resource.ParseQuantity(v)
	switch {
	case err != nil:
		r.fail(name, "must be a quantity such as 250m, 2 or 512Mi")
		return q, false
	case q.Sign() <= 0:
		r.fail(name, "must be greater than zero")
		return q, false
	}
	return q, true
}

// dnsLabel reads a DNS-1123 label of at most max characters.
func (r *reader) dnsLabel(name string, max int) string {
	v := r.get(name)
	if v == "" {
		return ""
	}
	if len(v) > max {
		r.fail(name, fmt.Sprintf("must be at most %d characters", max))
		return ""
	}
	if msgs := validation.IsDNS1123Label(v); len(msgs) > 0 {
		r.fail(name, strings.Join(msgs, "; "))
		return ""
	}
	return v
}

// dnsSubdomain reads a DNS-1123 subdomain.
func (r *reader) dnsSubdomain(name string) string {
	v := r.get(name)
	if msgs := validation.IsDNS1123Subdomain(v); v != "" && len(msgs) > 0 {
		r.fail(name, strings.Join(msgs, "; "))
		return ""
	}
	return v
}

// maxImageLength bounds a whole image reference, as distribution does its name.
const maxImageLength = 255

// image reads an image reference in the grammar of github.com/distribution/reference.
func (r *reader) image(name string) string {
	v := r.get(name)
	if v == "" {
		return ""
	}
	if len(v) > maxImageLength {
		r.fail(name, fmt.Sprintf("must be at most %d characters", maxImageLength))
		return ""
	}
	if _, err := reference.Parse(v); err != nil {
		r.fail(name, "not an image reference: "+err.Error())
		return ""
	}
	return v
}

// maxArgs bounds a container's arguments.
const maxArgs = 64

// args reads a JSON array of strings.
func (r *reader) args(name string) []string {
	v := r.get(name)
	if v == "" {
		return nil
	}
	var args []string
	// The "[" check rejects null, which would decode to no arguments without a word.
	if !strings.HasPrefix(v, "[") || json.Unmarshal([]byte(v), &args) != nil {
		r.fail(name, `must be a JSON array of strings, e.g. ["--dry-run", "--verbose"]`)
		return nil
	}
	if len(args) > maxArgs {
		r.fail(name, fmt.Sprintf("must have at most %d items", maxArgs))
		return nil
	}
	if len(args) == 0 {
		return nil
	}
	return args
}

// resources reads the cpu and memory requests and limits.
func (r *reader) resources() corev1.ResourceRequirements {
	var res corev1.ResourceRequirements
	for _, rn := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		reqName, limName := string(rn)+"-request", string(rn)+"-limit"
		req, hasReq := r.quantity(reqName)
		lim, hasLim := r.quantity(limName)
		if hasReq {
			if res.Requests == nil {
				res.Requests = corev1.ResourceList{}
			}
			res.Requests[rn] = req
		}
		if hasLim {
			if res.Limits == nil {
				res.Limits = corev1.ResourceList{}
			}
			res.Limits[rn] = lim
		}
		if hasReq && hasLim && lim.Cmp(req) < 0 {
			r.fail(limName, fmt.Sprintf("must not be less than %s %s", reqName, req.String()))
		}
	}
	return res
}

// Bounds of a member list.
const (
	maxSubjects       = 50
	maxSubjectNameLen = 253
)

// subjects reads a comma-separated list of user:<name> and group:<name>, sorted and without
// duplicates so that the same members render the same bytes.
func (r *reader) subjects(name string) []rbacv1.Subject {
	v := r.get(name)
	if v == "" {
		return nil
	}
	var subjects []rbacv1.Subject
	for item := range strings.SplitSeq(v, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue // a trailing comma, say
		}
		prefix, subject, _ := strings.Cut(item, ":")
		subject = strings.TrimSpace(subject)
		var kind string
		switch prefix {
		case "user":
			kind = rbacv1.UserKind
		case "group":
			kind = rbacv1.GroupKind
		default:
			r.fail(name, fmt.Sprintf("%q: must be user:<name> or group:<name>", item))
			return nil
		}
		switch {
		case subject == "" || len(subject) > maxSubjectNameLen:
			r.fail(name, fmt.Sprintf("%q: the name must have 1 to %d characters", item, maxSubjectNameLen))
			return nil
		case strings.ContainsFunc(subject, unicode.IsControl):
			r.fail(name, fmt.Sprintf("%q: the name must not contain control characters", item))
			return nil
		case strings.HasPrefix(subject, "system:"):
			// Kubernetes' own identities (system:authenticated, system:serviceaccount:…):
			// binding one would give a role to every user or to a workload.
			r.fail(name, fmt.Sprintf("%q: system: names are Kubernetes' own", item))
			return nil
		}
		subjects = append(subjects, rbacv1.Subject{Kind: kind, APIGroup: rbacv1.GroupName, Name: subject})
	}
	slices.SortFunc(subjects, func(a, b rbacv1.Subject) int {
		return cmp.Or(strings.Compare(a.Kind, b.Kind), strings.Compare(a.Name, b.Name))
	})
	subjects = slices.Compact(subjects)
	if len(subjects) > maxSubjects {
		r.fail(name, fmt.Sprintf("must list at most %d members", maxSubjects))
		return nil
	}
	return subjects
}
