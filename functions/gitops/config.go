package gitops

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Configuration keys read from the function's cfg (the ./cfg file merged with the environment).
const (
	EnvKubeconfig = "DWP_KUBECONFIG"
	EnvAppLabel   = "DWP_APP_LABEL"
	EnvTaskLabel  = "DWP_TASK_LABEL"
	EnvRunKeyFile = "DWP_RUN_KEY_FILE"
	// EnvRepo is the GitOps repository's URL (http or https); empty turns CD runs off.
	EnvRepo = "DWP_GITOPS_REPO"
	// EnvBranch is the branch Argo CD follows and runs commit to.
	EnvBranch = "DWP_GITOPS_BRANCH"
	// EnvRoot is the folder of the repository holding <namespace>/<app> folders.
	EnvRoot = "DWP_GITOPS_ROOT"
	// EnvUsername and EnvPasswordFile authenticate pushes (a token as password).
	EnvUsername     = "DWP_GITOPS_USERNAME"
	EnvPasswordFile = "DWP_GITOPS_PASSWORD_FILE"
	// EnvArgoCDNamespace is where Argo CD's Applications live.
	EnvArgoCDNamespace = "DWP_ARGOCD_NAMESPACE"
	// EnvArgoCDProject is the AppProject of the apps' Applications, which limits their
	// source repositories and destinations.
	EnvArgoCDProject = "DWP_ARGOCD_PROJECT"
	// EnvDestination is the API server Argo CD deploys to, as Argo CD names it.
	EnvDestination = "DWP_ARGOCD_DESTINATION"
	// EnvCITemplate is the ClusterWorkflowTemplate (or WorkflowTemplate) of CI runs whose
	// success deploys their image (CI → CD) in apps that opted in.
	EnvCITemplate = "DWP_CI_TEMPLATE"
	// EnvAppServiceTemplate is the ClusterWorkflowTemplate CI → CD submits.
	EnvAppServiceTemplate = "DWP_CD_APP_SERVICE_TEMPLATE"
	// EnvTimeout is how long a run waits for Argo CD to report its revision Synced and
	// Healthy, unless the run's own timeout parameter says otherwise.
	EnvTimeout = "DWP_CD_TIMEOUT"
)

// Config is the gitops family's configuration.
type Config struct {
	Kubeconfig         string
	AppLabel           string
	TaskLabel          string
	RunKeyFile         string
	CITemplate         string
	AppServiceTemplate string
	Repo               string
	Branch             string
	Root               string
	Username           string
	Password           string
	ArgoCDNamespace    string
	Project            string
	Destination        string
	Timeout            time.Duration
}

// ParseConfig reads the family's keys from cfg and checks them.
func ParseConfig(cfg map[string]string) (Config, error) {
	or := func(v, def string) string {
		if v == "" {
			return def
		}
		return v
	}
	c := Config{
		Kubeconfig:         cfg[EnvKubeconfig],
		AppLabel:           or(cfg[EnvAppLabel], "app"),
		TaskLabel:          or(cfg[EnvTaskLabel], "dwp.io/task"),
		CITemplate:         or(cfg[EnvCITemplate], "dwp-ci"),
		AppServiceTemplate: or(cfg[EnvAppServiceTemplate], "dwp-cd-app-service"),
		RunKeyFile:         cfg[EnvRunKeyFile],
		Repo:               cfg[EnvRepo],
		Branch:             or(cfg[EnvBranch], "main"),
		Root:               strings.Trim(or(cfg[EnvRoot], "apps"), "/"),
		Username:           cfg[EnvUsername],
		ArgoCDNamespace:    or(cfg[EnvArgoCDNamespace], "argocd"),
		Project:            or(cfg[EnvArgoCDProject], "dwp"),
		Destination:        or(cfg[EnvDestination], "https://kubernetes.default.svc"),
		Timeout:            10 * time.Minute,
	}
	var errs []error
	if c.Repo != "" {
		if u, err := url.Parse(c.Repo); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
			errs = append(errs, fmt.Errorf("%s=%q: want an http(s) URL without credentials (give those in %s and %s)", EnvRepo, c.Repo, EnvUsername, EnvPasswordFile))
		}
	}
	if p := cfg[EnvPasswordFile]; p != "" {
		b, err := os.ReadFile(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", EnvPasswordFile, err))
		}
		c.Password = strings.TrimSpace(string(b))
	}
	for _, part := range strings.Split(c.Root, "/") {
		if msgs := validation.IsDNS1123Label(part); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("%s=%q: each folder must be a DNS-1123 label", EnvRoot, c.Root))
			break
		}
	}
	for key, v := range map[string]string{EnvArgoCDNamespace: c.ArgoCDNamespace, EnvArgoCDProject: c.Project,
		EnvCITemplate: c.CITemplate, EnvAppServiceTemplate: c.AppServiceTemplate} {
		if msgs := validation.IsDNS1123Subdomain(v); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("%s=%q: %s", key, v, strings.Join(msgs, "; ")))
		}
	}
	for key, v := range map[string]string{EnvAppLabel: c.AppLabel, EnvTaskLabel: c.TaskLabel} {
		if msgs := validation.IsQualifiedName(v); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("%s=%q: %s", key, v, strings.Join(msgs, "; ")))
		}
	}
	if v := cfg[EnvTimeout]; v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			errs = append(errs, fmt.Errorf("%s=%q: want a positive duration such as 10m", EnvTimeout, v))
		}
		c.Timeout = d
	}
	return c, errors.Join(errs...)
}
