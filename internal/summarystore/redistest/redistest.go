// Package redistest starts a private redis-server for a test, so that a test may empty
// it, compare its whole keyspace or stop it without disturbing anything else.
package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Binary is the redis-server started (REDIS_SERVER overrides it).
func Binary() string {
	if b := os.Getenv("REDIS_SERVER"); b != "" {
		return b
	}
	return "redis-server"
}

// Server is a running private redis-server.
type Server struct {
	Addr string
}

// Start starts a redis-server on a free loopback port, without persistence, stopped
// when the test ends. The test is skipped when no redis-server is installed.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath(Binary())
	if err != nil {
		t.Skipf("no redis-server: %v", err)
	}
	dir := t.TempDir()
	for attempt := 0; ; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "",
			"--appendonly", "no", "--dir", dir, "--logfile", filepath.Join(dir, "redis.log"))
		if err := cmd.Start(); err != nil {
			t.Fatalf("start redis-server: %v", err)
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if waitPing(addr, 5*time.Second) == nil {
			t.Cleanup(func() {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
			})
			return &Server{Addr: addr}
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if attempt == 2 {
			log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
			t.Fatalf("redis-server did not answer on %s:\n%s", addr, log)
		}
	}
}

// Client is a new client of database db, closed when the test ends.
func (s *Server) Client(t testing.TB, db int) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr, DB: db})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func waitPing(addr string, timeout time.Duration) error {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis at %s: %w", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Dump is the whole keyspace of a database, each value rendered comparably (hashes and
// sets sorted), keys with the prefix trimmed.
func Dump(ctx context.Context, t testing.TB, c *redis.Client, trim string) map[string]string {
	t.Helper()
	out := map[string]string{}
	keys, err := c.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		typ, err := c.Type(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		var v string
		switch typ {
		case "string":
			v, err = c.Get(ctx, k).Result()
		case "hash":
			var m map[string]string
			m, err = c.HGetAll(ctx, k).Result()
			v = fmt.Sprintf("%v", m) // fmt sorts map keys
		case "set":
			var m []string
			m, err = c.SMembers(ctx, k).Result()
			set := map[string]bool{}
			for _, x := range m {
				set[x] = true
			}
			v = fmt.Sprintf("%v", set)
		default:
			v = "<" + typ + ">"
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(k) >= len(trim) && k[:len(trim)] == trim {
			k = k[len(trim):]
		}
		out[typ+" "+k] = v
	}
	return out
}
