package gitops

import (
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/dwp-sre/dwp-sre/internal/envflag"
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

// checked sets a string setting that check accepts.
func checked(check func(string) []string, field func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error {
		if msgs := check(v); len(msgs) > 0 {
			return fmt.Errorf("%q: %s", v, strings.Join(msgs, "; "))
		}
		*field(c) = v
		return nil
	}
}

// settings are the family's variables.
var settings = []envflag.Setting[Config]{
	envflag.String(EnvKubeconfig, "kubeconfig", "", "API server address and CA (empty: in-cluster)", func(c *Config) *string { return &c.Kubeconfig }),
	envflag.Func(EnvAppLabel, "app-label", "app", "label naming an object's app", checked(validation.IsQualifiedName, func(c *Config) *string { return &c.AppLabel })),
	envflag.Func(EnvTaskLabel, "task-label", "dwp.io/task", "label naming a workflow's kind of task", checked(validation.IsQualifiedName, func(c *Config) *string { return &c.TaskLabel })),
	envflag.String(EnvRunKeyFile, "run-key-file", "", "key sealing CD runs", func(c *Config) *string { return &c.RunKeyFile }),
	envflag.Func(EnvCITemplate, "ci-template", "dwp-ci", "template of CI runs that deploy", checked(validation.IsDNS1123Subdomain, func(c *Config) *string { return &c.CITemplate })),
	envflag.Func(EnvAppServiceTemplate, "cd-app-service-template", "dwp-cd-app-service", "template CI → CD submits", checked(validation.IsDNS1123Subdomain, func(c *Config) *string { return &c.AppServiceTemplate })),
	envflag.Func(EnvRepo, "gitops-repo", "", "GitOps repository (empty: no CD runs)", func(c *Config, v string) error {
		if v != "" {
			if u, err := url.Parse(v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
				return fmt.Errorf("%q: want an http(s) URL without credentials (give those in %s and %s)", v, EnvUsername, EnvPasswordFile)
			}
		}
		c.Repo = v
		return nil
	}),
	envflag.String(EnvBranch, "gitops-branch", "main", "branch Argo CD follows", func(c *Config) *string { return &c.Branch }),
	envflag.Func(EnvRoot, "gitops-root", "apps", "folder of the <namespace>/<app> folders", func(c *Config, v string) error {
		v = strings.Trim(v, "/")
		for _, part := range strings.Split(v, "/") {
			if msgs := validation.IsDNS1123Label(part); len(msgs) > 0 {
				return fmt.Errorf("%q: each folder must be a DNS-1123 label", v)
			}
		}
		c.Root = v
		return nil
	}),
	envflag.String(EnvUsername, "gitops-username", "", "user of pushes", func(c *Config) *string { return &c.Username }),
	envflag.Func(EnvPasswordFile, "gitops-password-file", "", "file holding the password (a token) of pushes", func(c *Config, v string) error {
		if v == "" {
			return nil
		}
		b, err := os.ReadFile(v)
		if err != nil {
			return err
		}
		c.Password = strings.TrimSpace(string(b))
		return nil
	}),
	envflag.Func(EnvArgoCDNamespace, "argocd-namespace", "argocd", "Argo CD's namespace", checked(validation.IsDNS1123Subdomain, func(c *Config) *string { return &c.ArgoCDNamespace })),
	envflag.Func(EnvArgoCDProject, "argocd-project", "dwp", "AppProject of the apps' Applications", checked(validation.IsDNS1123Subdomain, func(c *Config) *string { return &c.Project })),
	envflag.String(EnvDestination, "argocd-destination", "https://kubernetes.default.svc", "API server Argo CD deploys to", func(c *Config) *string { return &c.Destination }),
	envflag.PositiveDuration(EnvTimeout, "cd-timeout", "10m", "how long a run waits for Synced and Healthy", func(c *Config) *time.Duration { return &c.Timeout }),
}

// ParseConfig reads the family's keys from cfg and checks them.
func ParseConfig(cfg map[string]string) (Config, error) { return envflag.FromMap(settings, cfg) }
