package summarystore

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
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

// ParseOptions reads the options from a configuration (variables above).
func ParseOptions(cfg map[string]string) (Options, error) {
	o := Options{
		Addr:     cfg[EnvRedisAddr],
		Prefix:   cfg[EnvRedisPrefix],
		Username: cfg[EnvRedisUsername],
		Password: cfg[EnvRedisPassword],
	}
	if o.Addr == "" {
		o.Addr = DefaultRedisAddr
	}
	if o.Prefix == "" {
		o.Prefix = DefaultRedisPrefix
	}
	var errs []error
	if v := cfg[EnvRedisDB]; v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			errs = append(errs, fmt.Errorf("%s=%q: want a database number (0, 1, ...)", EnvRedisDB, v))
		}
		o.DB = n
	}
	if len(o.Prefix) > 64 || strings.ContainsAny(o.Prefix, " \t\r\n{}*?[]") {
		errs = append(errs, fmt.Errorf("%s=%q: at most 64 characters, without spaces, braces or glob characters", EnvRedisPrefix, o.Prefix))
	}
	return o, errors.Join(errs...)
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
