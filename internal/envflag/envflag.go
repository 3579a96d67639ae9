// Package envflag reads a service's configuration from environment variables and from
// flags of the same meaning: every setting has a variable, a flag, a default and a help
// text, and a flag given wins over its variable. A service lists its settings once; the
// list gives the flags, their usage text and the documentation of the variables.
package envflag

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Setting is one entry of a configuration of type C: its environment variable, its flag,
// its default and help, and how a value is checked and stored in C.
type Setting[C any] struct {
	env, flag, def, help string
	set                  func(c *C, v string) error
}

// Func is a setting whose value set checks and stores.
func Func[C any](env, fl, def, help string, set func(c *C, v string) error) Setting[C] {
	return Setting[C]{env: env, flag: fl, def: def, help: help, set: set}
}

// String is a setting of any string.
func String[C any](env, fl, def, help string, field func(*C) *string) Setting[C] {
	return Func(env, fl, def, help, func(c *C, v string) error { *field(c) = v; return nil })
}

// Duration is a setting of a duration of zero or more.
func Duration[C any](env, fl, def, help string, field func(*C) *time.Duration) Setting[C] {
	return Func(env, fl, def, help, func(c *C, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return fmt.Errorf("not a duration such as 15s: %q", v)
		}
		*field(c) = d
		return nil
	})
}

// PositiveDuration is a setting of a duration longer than zero.
func PositiveDuration[C any](env, fl, def, help string, field func(*C) *time.Duration) Setting[C] {
	return Func(env, fl, def, help, func(c *C, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("not a positive duration such as 15s: %q", v)
		}
		*field(c) = d
		return nil
	})
}

// Int is a setting of a whole number of at least minimum.
func Int[C any](env, fl, def, help string, minimum int, field func(*C) *int) Setting[C] {
	return Func(env, fl, def, help, func(c *C, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < minimum {
			return fmt.Errorf("not a whole number of at least %d: %q", minimum, v)
		}
		*field(c) = n
		return nil
	})
}

// Bool is a setting of true or false (as strconv.ParseBool reads them).
func Bool[C any](env, fl, def, help string, field func(*C) *bool) Setting[C] {
	return Func(env, fl, def, help, func(c *C, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("not true or false: %q", v)
		}
		*field(c) = b
		return nil
	})
}

// LogLevel is a setting of a slog level name: debug, info, warn or error, in any case;
// it is stored in lower case.
func LogLevel[C any](env, fl, def, help string, field func(*C) *string) Setting[C] {
	return Func(env, fl, def, help, func(c *C, v string) error {
		switch strings.ToLower(v) {
		case "debug", "info", "warn", "error":
			*field(c) = strings.ToLower(v)
			return nil
		}
		return fmt.Errorf("not debug, info, warn or error: %q", v)
	})
}

// Load reads settings from the environment (getenv; an empty variable means its default)
// and then from args, the flags of the command name. Every invalid variable is reported,
// each naming the variable and where its value came from; a flag's usage goes to usage.
// -h answers flag.ErrHelp.
func Load[C any](name string, settings []Setting[C], args []string, getenv func(string) string, usage io.Writer) (C, error) {
	var c, zero C
	var errs []error
	for _, s := range settings {
		v, from := s.def, "default"
		if e := getenv(s.env); e != "" {
			v, from = e, s.env
		}
		if err := s.set(&c, v); err != nil {
			errs = append(errs, fmt.Errorf("%s (%s): %w", s.env, from, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return zero, err
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(usage)
	for _, s := range settings {
		fs.Func(s.flag, fmt.Sprintf("%s (env %s, default %q)", s.help, s.env, s.def), func(v string) error {
			return s.set(&c, v)
		})
	}
	if err := fs.Parse(args); err != nil {
		return zero, err
	}
	if fs.NArg() > 0 {
		return zero, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	return c, nil
}

// Variables lists the settings' environment variables with their defaults and help.
func Variables[C any](settings []Setting[C]) [][3]string {
	out := make([][3]string, 0, len(settings))
	for _, s := range settings {
		out = append(out, [3]string{s.env, s.def, s.help})
	}
	return out
}

// FromMap reads settings from a map of variables alone (no flags): the task function's
// configuration, which its runner gives as ./cfg merged with the environment.
func FromMap[C any](settings []Setting[C], cfg map[string]string) (C, error) {
	return Load("", settings, nil, func(k string) string { return cfg[k] }, io.Discard)
}
