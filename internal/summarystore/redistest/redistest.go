// Package redistest starts a private redis-server for a test, so that a test may empty
// it, compare its whole keyspace or stop it without disturbing anything else.
package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"k8s.io/apimachinery/pkg/util/wait"
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
	cmd  *exec.Cmd
	dir  string
}

// ErrNoRedis: no redis-server is installed.
var ErrNoRedis = errors.New("no redis-server")

// Start starts a redis-server on a free loopback port, without persistence, stopped
// when the test ends. The test is skipped when no redis-server is installed.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := Launch()
	if errors.Is(err, ErrNoRedis) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// Launch starts a redis-server as Start does, for a server shared by a package's tests:
// its TestMain stops it after m.Run (a server started with a zero testing.T was never
// stopped, and outlived every benchmark run).
func Launch() (*Server, error) {
	bin, err := exec.LookPath(Binary())
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoRedis, err)
	}
	dir, err := os.MkdirTemp("", "redistest-")
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		port, err := freePort()
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "",
			"--appendonly", "no", "--dir", dir, "--logfile", filepath.Join(dir, "redis.log"))
		if err := cmd.Start(); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("start redis-server: %w", err)
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if waitPing(addr, 5*time.Second) == nil {
			return &Server{Addr: addr, cmd: cmd, dir: dir}, nil
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if attempt == 2 {
			log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
			os.RemoveAll(dir)
			return nil, fmt.Errorf("redis-server did not answer on %s:\n%s", addr, log)
		}
	}
}

// Stop stops the server and removes its folder; a nil server is fine.
func (s *Server) Stop() {
	if s == nil || s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	_ = os.RemoveAll(s.dir)
	s.cmd = nil
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
	var last error
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		last = c.Ping(ctx).Err()
		return last == nil, nil
	})
	if err != nil {
		return fmt.Errorf("redis at %s: %w", addr, errors.Join(err, last))
	}
	return nil
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
