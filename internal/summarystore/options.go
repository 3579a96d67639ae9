package summarystore

import (
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/dwp-sre/dwp-sre/internal/envflag"
)

// Configuration keys (environment variables) of the Redis holding the summaries.
const (
	EnvRedisAddr     = "DWP_REDIS_ADDR"
	EnvRedisDB       = "DWP_REDIS_DB"
	EnvRedisPrefix   = "DWP_REDIS_PREFIX"
	EnvRedisUsername = "DWP_REDIS_USERNAME"
	EnvRedisPassword = "DWP_REDIS_PASSWORD"
)

// Defaults of the configuration.
const (
	DefaultRedisAddr   = "127.0.0.1:6379"
	DefaultRedisPrefix = "dwp:"
)

// Options say where the summaries are kept.
type Options struct {
	Addr     string
	DB       int
	Prefix   string
	Username string
	Password string
}

// Settings are the options' variables, for a service's own settings to include (with
// a function giving its Options).
func Settings[C any](opts func(*C) *Options) []envflag.Setting[C] {
	return []envflag.Setting[C]{
		envflag.String(EnvRedisAddr, "redis-addr", DefaultRedisAddr, "Redis holding the app summaries", func(c *C) *string { return &opts(c).Addr }),
		envflag.Int(EnvRedisDB, "redis-db", "0", "Redis database of the summaries", 0, func(c *C) *int { return &opts(c).DB }),
		envflag.Func(EnvRedisPrefix, "redis-prefix", DefaultRedisPrefix, "key prefix of the summaries", func(c *C, v string) error {
			if len(v) > 64 || strings.ContainsAny(v, " \t\r\n{}*?[]") {
				return fmt.Errorf("%q: at most 64 characters, without spaces, braces or glob characters", v)
			}
			opts(c).Prefix = v
			return nil
		}),
		envflag.String(EnvRedisUsername, "redis-username", "", "Redis user", func(c *C) *string { return &opts(c).Username }),
		envflag.String(EnvRedisPassword, "redis-password", "", "Redis password", func(c *C) *string { return &opts(c).Password }),
	}
}

// ParseOptions reads the options from a configuration (variables above).
func ParseOptions(cfg map[string]string) (Options, error) {
	return envflag.FromMap(Settings(func(o *Options) *Options { return o }), cfg)
}

// Client is a client of the configured Redis. It connects on first use.
func (o Options) Client() *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr:     o.Addr,
		DB:       o.DB,
		Username: o.Username,
		Password: o.Password,
	})
}
