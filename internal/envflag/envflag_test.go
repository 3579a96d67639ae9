package envflag

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"
)

type testConfig struct {
	Name     string
	Wait     time.Duration
	Interval time.Duration
	Count    int
	On       bool
	Level    string
	Mode     string
}

var testSettings = []Setting[testConfig]{
	String("T_NAME", "name", "anon", "a name", func(c *testConfig) *string { return &c.Name }),
	Duration("T_WAIT", "wait", "0s", "a wait", func(c *testConfig) *time.Duration { return &c.Wait }),
	PositiveDuration("T_INTERVAL", "interval", "15s", "an interval", func(c *testConfig) *time.Duration { return &c.Interval }),
	Int("T_COUNT", "count", "4", "a count", 1, func(c *testConfig) *int { return &c.Count }),
	Bool("T_ON", "on", "true", "a switch", func(c *testConfig) *bool { return &c.On }),
	LogLevel("T_LEVEL", "level", "info", "a log level", func(c *testConfig) *string { return &c.Level }),
	Func("T_MODE", "mode", "fast", "fast or slow", func(c *testConfig, v string) error {
		if v != "fast" && v != "slow" {
			return errors.New("not fast or slow")
		}
		c.Mode = v
		return nil
	}),
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestLoad(t *testing.T) {
	defaults := testConfig{Name: "anon", Interval: 15 * time.Second, Count: 4, On: true, Level: "info", Mode: "fast"}
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want func(c *testConfig)
	}{
		{"defaults", nil, nil, func(*testConfig) {}},
		{"variables", map[string]string{"T_NAME": "bob", "T_WAIT": "2s", "T_COUNT": "9", "T_ON": "false", "T_LEVEL": "DEBUG", "T_MODE": "slow"}, nil, func(c *testConfig) {
			c.Name, c.Wait, c.Count, c.On, c.Level, c.Mode = "bob", 2*time.Second, 9, false, "debug", "slow"
		}},
		{"a flag wins over its variable", map[string]string{"T_COUNT": "9", "T_INTERVAL": "1m"}, []string{"-count", "2", "--name=eve"}, func(c *testConfig) {
			c.Count, c.Interval, c.Name = 2, time.Minute, "eve"
		}},
		{"an empty variable is its default", map[string]string{"T_COUNT": ""}, nil, func(*testConfig) {}},
		{"an empty string flag", nil, []string{"-name="}, func(c *testConfig) { c.Name = "" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Load("test", testSettings, tt.args, env(tt.env), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			want := defaults
			tt.want(&want)
			if got != want {
				t.Errorf("got %+v, want %+v", got, want)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want []string
	}{
		{"negative duration", map[string]string{"T_WAIT": "-1s"}, nil, []string{`T_WAIT (T_WAIT): not a duration such as 15s: "-1s"`}},
		{"zero positive duration", map[string]string{"T_INTERVAL": "0s"}, nil, []string{`T_INTERVAL (T_INTERVAL): not a positive duration such as 15s: "0s"`}},
		{"number below its minimum", map[string]string{"T_COUNT": "0"}, nil, []string{`T_COUNT (T_COUNT): not a whole number of at least 1: "0"`}},
		{"not a bool", map[string]string{"T_ON": "perhaps"}, nil, []string{`T_ON (T_ON): not true or false: "perhaps"`}},
		{"not a level", map[string]string{"T_LEVEL": "loud"}, nil, []string{`T_LEVEL (T_LEVEL): not debug, info, warn or error: "loud"`}},
		{"own check", map[string]string{"T_MODE": "warp"}, nil, []string{"T_MODE (T_MODE): not fast or slow"}},
		{"every invalid variable", map[string]string{"T_COUNT": "x", "T_LEVEL": "loud"}, nil, []string{"T_COUNT (T_COUNT)", "T_LEVEL (T_LEVEL)"}},
		{"invalid flag", nil, []string{"-count", "0"}, []string{`invalid value "0" for flag -count`}},
		{"unknown flag", nil, []string{"-nope"}, []string{"flag provided but not defined: -nope"}},
		{"positional argument", nil, []string{"extra"}, []string{"unexpected arguments: [extra]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load("test", testSettings, tt.args, env(tt.env), io.Discard)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestInvalidDefaultNamesItsSource(t *testing.T) {
	bad := []Setting[testConfig]{Int("T_COUNT", "count", "none", "a count", 0, func(c *testConfig) *int { return &c.Count })}
	_, err := Load("test", bad, nil, env(nil), io.Discard)
	if err == nil || !strings.HasPrefix(err.Error(), "T_COUNT (default): ") {
		t.Fatalf("err = %v, want it to name the default", err)
	}
}

func TestUsage(t *testing.T) {
	var usage bytes.Buffer
	_, err := Load("test", testSettings, []string{"-h"}, env(nil), &usage)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err = %v, want flag.ErrHelp", err)
	}
	for _, w := range []string{"Usage of test:", "-interval", `an interval (env T_INTERVAL, default "15s")`} {
		if !strings.Contains(usage.String(), w) {
			t.Errorf("usage lacks %q:\n%s", w, usage.String())
		}
	}
}

func TestVariables(t *testing.T) {
	got := Variables(testSettings[:2])
	want := [][3]string{{"T_NAME", "anon", "a name"}, {"T_WAIT", "0s", "a wait"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}
