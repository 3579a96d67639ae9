package manifest

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The files of a project.
const (
	NamespaceFile  = "namespace.yaml"
	TaskRunnerFile = "task-runner.yaml"
	MembersFile    = "members.yaml"
)

// TaskRunner names the ServiceAccount that runs a project's CD tasks and the ClusterRole
// bound to it in the project's namespace.
const TaskRunner = "dwp-task-runner"

// roles are the member roles of a project.
var roles = []struct{ param, member, binding, clusterRole string }{
	{"admins", "admin", "dwp-admins", "admin"},
	{"editors", "editor", "dwp-editors", "edit"},
	{"viewers", "viewer", "dwp-viewers", "view"},
}

type project struct {
	target  Target
	members [][]rbacv1.Subject // by roles
}

func parseProject(t Target, r *reader) *project {
	p := &project{target: t, members: make([][]rbacv1.Subject, len(roles))}
	for i, role := range roles {
		p.members[i] = r.subjects(role.param)
	}
	return p
}

func (p *project) Kind() Kind { return KindProject }

func (p *project) Owns(file string) bool {
	switch file {
	case NamespaceFile, TaskRunnerFile, MembersFile:
		return true
	}
	return false
}

func (p *project) Summary() string {
	var counts []string
	for i, role := range roles {
		if n := len(p.members[i]); n > 0 {
			counts = append(counts, fmt.Sprintf("%d %s%s", n, role.member, plural(n)))
		}
	}
	if counts == nil {
		return fmt.Sprintf("project %s: no members", p.target.App)
	}
	return fmt.Sprintf("project %s: %s", p.target.App, strings.Join(counts, ", "))
}

func (p *project) Files() (map[string][]byte, error) {
	t := p.target
	ns := t.App // the project's namespace, which this run creates
	meta := func(name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Namespace: ns, Labels: t.labels()}
	}

	files := make(map[string][]byte)
	var err error
	files[NamespaceFile], err = encode(&corev1.Namespace{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: t.labels()},
	})
	if err != nil {
		return nil, err
	}
	files[TaskRunnerFile], err = encode(
		&corev1.ServiceAccount{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
			ObjectMeta: meta(TaskRunner),
		},
		&rbacv1.RoleBinding{
			TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "RoleBinding"},
			ObjectMeta: meta(TaskRunner),
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: TaskRunner, Namespace: ns}},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: TaskRunner},
		},
	)
	if err != nil {
		return nil, err
	}

	var bindings []any
	for i, role := range roles {
		if len(p.members[i]) == 0 {
			continue
		}
		bindings = append(bindings, &rbacv1.RoleBinding{
			TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "RoleBinding"},
			ObjectMeta: meta(role.binding),
			Subjects:   p.members[i],
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.clusterRole},
		})
	}
	// Without members there is no members.yaml: Owns makes the run remove an old one.
	if len(bindings) > 0 {
		if files[MembersFile], err = encode(bindings...); err != nil {
			return nil, err
		}
	}
	return files, nil
}
