// Package kube turns a kubeconfig into named clusters with ready clients, so that a
// service can address several Kubernetes clusters by name: every context of the kubeconfig
// is one cluster, named after the context. Without a kubeconfig the service's own
// in-cluster credentials are one cluster named InCluster.
package kube

import (
	"errors"
	"fmt"
	"slices"
	"sort"

	argoclient "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	metricsclient "k8s.io/metrics/pkg/client/clientset/versioned"
)

// InCluster is the name of the cluster built from in-cluster credentials.
const InCluster = "in-cluster"

// Cluster is one Kubernetes cluster and clients for it. The clients share Config.
type Cluster struct {
	Name       string
	Config     *rest.Config
	Kubernetes kubernetes.Interface
	Argo       argoclient.Interface
	Metrics    metricsclient.Interface
}

// Options say where clusters come from.
type Options struct {
	// Kubeconfig is a kubeconfig file; each of its contexts becomes a cluster. Empty means
	// the in-cluster configuration.
	Kubeconfig string
	// Default names the cluster used when a request names none. Empty means the
	// kubeconfig's current context (or its only context).
	Default string
	// QPS and Burst limit requests per cluster; zero keeps client-go's defaults.
	QPS   float32
	Burst int
	// UserAgent identifies the service in the API server's logs and audit.
	UserAgent string
}

// Clusters are the clusters a service can reach, by name.
type Clusters struct {
	byName map[string]*Cluster
	def    string
}

// Load builds the clusters described by opts.
func Load(opts Options) (*Clusters, error) {
	configs := map[string]*rest.Config{}
	def := opts.Default
	if opts.Kubeconfig == "" {
		cfg, err := RESTConfig("")
		if err != nil {
			return nil, err
		}
		configs[InCluster] = cfg
		if def == "" {
			def = InCluster
		}
	} else {
		raw, err := clientcmd.LoadFromFile(opts.Kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("read kubeconfig %s: %w", opts.Kubeconfig, err)
		}
		configs, err = contextConfigs(raw)
		if err != nil {
			return nil, fmt.Errorf("kubeconfig %s: %w", opts.Kubeconfig, err)
		}
		if def == "" {
			def = raw.CurrentContext
		}
		if def == "" && len(configs) == 1 {
			for name := range configs {
				def = name
			}
		}
	}
	if _, ok := configs[def]; !ok {
		names := make([]string, 0, len(configs))
		for n := range configs {
			names = append(names, n)
		}
		sort.Strings(names)
		if def == "" {
			return nil, fmt.Errorf("no default cluster: the kubeconfig has no current context; choose one of %v", names)
		}
		return nil, fmt.Errorf("default cluster %q is not among %v", def, names)
	}
	return FromConfigs(configs, def, opts)
}

// RESTConfig is one API server's address and credentials: those of the kubeconfig's
// current context, or the in-cluster ones when kubeconfig is empty.
func RESTConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("no kubeconfig given and not running in a cluster: %w", err)
		}
		return cfg, nil
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	return cfg, nil
}

// FromConfigs builds clusters from rest configs by name; def names the default.
func FromConfigs(configs map[string]*rest.Config, def string, opts Options) (*Clusters, error) {
	if _, ok := configs[def]; !ok {
		return nil, fmt.Errorf("default cluster %q is not among the clusters", def)
	}
	cs := &Clusters{byName: make(map[string]*Cluster, len(configs)), def: def}
	for name, cfg := range configs {
		cfg = rest.CopyConfig(cfg)
		if opts.QPS > 0 {
			cfg.QPS = opts.QPS
		}
		if opts.Burst > 0 {
			cfg.Burst = opts.Burst
		}
		if opts.UserAgent != "" {
			cfg.UserAgent = opts.UserAgent
		}
		c, err := NewCluster(name, cfg)
		if err != nil {
			return nil, err
		}
		cs.byName[name] = c
	}
	return cs, nil
}

// NewClusters groups ready clusters (tests build them with fake clients); def names the
// default.
func NewClusters(def string, clusters ...*Cluster) (*Clusters, error) {
	cs := &Clusters{byName: make(map[string]*Cluster, len(clusters)), def: def}
	for _, c := range clusters {
		if _, dup := cs.byName[c.Name]; dup {
			return nil, fmt.Errorf("cluster %q given twice", c.Name)
		}
		cs.byName[c.Name] = c
	}
	if _, ok := cs.byName[def]; !ok {
		return nil, fmt.Errorf("default cluster %q is not among the clusters", def)
	}
	return cs, nil
}

// NewCluster builds the clients of one cluster.
func NewCluster(name string, cfg *rest.Config) (*Cluster, error) {
	k, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: kubernetes client: %w", name, err)
	}
	a, err := argoclient.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: argo client: %w", name, err)
	}
	m, err := metricsclient.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: metrics client: %w", name, err)
	}
	return &Cluster{Name: name, Config: cfg, Kubernetes: k, Argo: a, Metrics: m}, nil
}

func contextConfigs(raw *clientcmdapi.Config) (map[string]*rest.Config, error) {
	if len(raw.Contexts) == 0 {
		return nil, errors.New("no contexts")
	}
	out := make(map[string]*rest.Config, len(raw.Contexts))
	for name := range raw.Contexts {
		cfg, err := clientcmd.NewNonInteractiveClientConfig(*raw, name, &clientcmd.ConfigOverrides{}, nil).ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("context %s: %w", name, err)
		}
		out[name] = cfg
	}
	return out, nil
}

// Get returns the named cluster; the empty name is the default cluster.
func (c *Clusters) Get(name string) (*Cluster, bool) {
	if name == "" {
		name = c.def
	}
	cl, ok := c.byName[name]
	return cl, ok
}

// Default is the cluster used when a request names none.
func (c *Clusters) Default() *Cluster { return c.byName[c.def] }

// Names lists the clusters, sorted.
func (c *Clusters) Names() []string {
	names := make([]string, 0, len(c.byName))
	for n := range c.byName {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
