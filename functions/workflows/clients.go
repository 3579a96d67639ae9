package workflows

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sync"
	"time"

	wfclientset "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
)

// Clients are the API clients acting as one identity.
type Clients struct {
	Kube kubernetes.Interface
	Argo wfclientset.Interface
	Meta metadata.Interface
}

// NewClients makes the clients for cfg.
func NewClients(cfg *rest.Config) (*Clients, error) {
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	argo, err := wfclientset.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("argo client: %w", err)
	}
	meta, err := metadata.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("metadata client: %w", err)
	}
	return &Clients{Kube: kube, Argo: argo, Meta: meta}, nil
}

// caller is one bearer token with its clients, and what the API server told about it:
// who it is and what it may do, remembered for as long as the caller is cached.
type caller struct {
	*Clients
	token string

	mu        sync.Mutex
	username  string
	decisions map[string]bool // "verb namespace" → allowed
}

func newCaller(token string, c *Clients) *caller {
	return &caller{Clients: c, token: token, decisions: map[string]bool{}}
}

// Username asks the API server who the token belongs to (a SelfSubjectReview, which every
// authenticated user may create).
func (c *caller) Username(ctx context.Context) (string, error) {
	c.mu.Lock()
	name := c.username
	c.mu.Unlock()
	if name != "" {
		return name, nil
	}
	r, err := c.Kube.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("who am I: %w", err)
	}
	name = r.Status.UserInfo.Username
	if name == "" {
		return "", fmt.Errorf("who am I: the API server named no user")
	}
	c.mu.Lock()
	c.username = name
	c.mu.Unlock()
	return name, nil
}

// maxDecisions bounds the access decisions remembered per caller.
const maxDecisions = 64

// Can asks the API server whether the caller may perform verb on workflows in namespace
// (a SelfSubjectAccessReview, so RBAC and any other authorizer decide).
func (c *caller) Can(ctx context.Context, verb, namespace string) (bool, error) {
	key := verb + " " + namespace
	c.mu.Lock()
	allowed, ok := c.decisions[key]
	c.mu.Unlock()
	if ok {
		return allowed, nil
	}
	r, err := c.Kube.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
		Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: namespace, Verb: verb, Group: "argoproj.io", Resource: "workflows",
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		return false, fmt.Errorf("access review: %w", err)
	}
	c.mu.Lock()
	if len(c.decisions) >= maxDecisions {
		clear(c.decisions)
	}
	c.decisions[key] = r.Status.Allowed
	c.mu.Unlock()
	return r.Status.Allowed, nil
}

// callers makes and briefly caches the clients of each bearer token. Entries are keyed by
// the token's hash, expire after ttl, and the cache holds at most max of them, so a flood
// of distinct tokens costs bounded memory.
type callers struct {
	newClients func(token string) (*Clients, error)
	ttl        time.Duration
	max        int
	now        func() time.Time

	mu      sync.Mutex
	entries map[[sha256.Size]byte]callerEntry
}

type callerEntry struct {
	c       *caller
	expires time.Time
}

const maxCallers = 512

func newCallers(newClients func(token string) (*Clients, error), ttl time.Duration) *callers {
	return &callers{newClients: newClients, ttl: ttl, max: maxCallers, now: time.Now, entries: map[[sha256.Size]byte]callerEntry{}}
}

// tokenClients returns a function making clients that authenticate with a token alone:
// the base config contributes the server and how to trust it, never its own credentials.
func tokenClients(base *rest.Config) func(token string) (*Clients, error) {
	return func(token string) (*Clients, error) { return NewClients(tokenConfig(base, token)) }
}

func tokenConfig(base *rest.Config, token string) *rest.Config {
	cfg := rest.AnonymousClientConfig(base)
	cfg.BearerToken = token
	cfg.QPS, cfg.Burst = 50, 100
	cfg.UserAgent = "dwp-function"
	return cfg
}

func (cs *callers) get(token string) (*caller, error) {
	if cs.ttl <= 0 {
		c, err := cs.newClients(token)
		if err != nil {
			return nil, err
		}
		return newCaller(token, c), nil
	}
	key := sha256.Sum256([]byte(token))
	now := cs.now()
	cs.mu.Lock()
	e, ok := cs.entries[key]
	cs.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.c, nil
	}
	c, err := cs.newClients(token)
	if err != nil {
		return nil, err
	}
	e = callerEntry{c: newCaller(token, c), expires: now.Add(cs.ttl)}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if len(cs.entries) >= cs.max {
		cs.evict(now)
	}
	cs.entries[key] = e
	return e.c, nil
}

// evict drops expired entries, and when none has expired, the one expiring first.
func (cs *callers) evict(now time.Time) {
	var oldestKey [sha256.Size]byte
	var oldest time.Time
	for k, e := range cs.entries {
		if !now.Before(e.expires) {
			delete(cs.entries, k)
			continue
		}
		if oldest.IsZero() || e.expires.Before(oldest) {
			oldest, oldestKey = e.expires, k
		}
	}
	if len(cs.entries) >= cs.max {
		delete(cs.entries, oldestKey)
	}
}

func (cs *callers) len() int {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return len(cs.entries)
}
