package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/dwp-sre/dwp-sre/internal/summarystore/redistest"
	"github.com/dwp-sre/dwp-sre/sandbox/browsertest"
	"github.com/dwp-sre/dwp-sre/sandbox/controlplane"
	"github.com/dwp-sre/dwp-sre/sse-router/console/consoletest"
)

// TestKilledComponentsComeBack runs `make run` (this command, on free ports, beside any
// other plane) with the console open on a demo pod's log, then kills each of its
// processes with SIGKILL in turn: each must be back (serving again, where it serves),
// and the console must show the pod's next lines without being reloaded.
func TestKilledComponentsComeBack(t *testing.T) {
	root := repoRoot(t)
	bin := testBinDir(t, root)
	state := t.TempDir()
	redis := redistest.Start(t)
	run := startRun(t, root, bin, state, redis.Addr)

	info, err := controlplane.ReadInfo(filepath.Join(state, "cluster"))
	if err != nil {
		t.Fatal(err)
	}
	kube := adminClient(t, info)
	pod := runningPod(t, kube, "demo", "app=web")

	browser := browsertest.New(t, chromedp.WindowSize(1200, 900))
	problems := browsertest.Watch(t, browser)
	tab := consoletest.NewTab(t, browser, "make-run", t.ArtifactDir())
	tab.SignIn(run.console, info.Tokens["alice"])
	tab.GoTo(fmt.Sprintf("#/ns/demo/app/web/pod/%s", pod))
	lines := `document.querySelectorAll("#pod-log-lines .line").length`
	tab.WaitFor("the pod's log", lines+` >= 1`, 60*time.Second)
	tab.WatchConnection()
	tab.Shot("pod-log")

	ready := map[string]func(context.Context) error{
		"dwp-function": httpOK(nil, "http://"+run.function+"/health/readiness"),
		"watcher":      httpOK(nil, "http://"+run.watcher+"/readyz"),
		"sse-router":   httpOK(nil, "http://"+run.router+"/readyz"),
		// Back when it serves what clients ask (its /readyz also waits for start-up work
		// such as reconciling the default RBAC roles, which takes seconds more).
		"kube-apiserver": httpOK(adminTransport(t, info), info.Server+"/api/v1/namespaces/demo/pods?limit=1"),
		// Through the API server, which reads it for a list.
		"etcd":       httpOK(adminTransport(t, info), info.Server+"/api/v1/namespaces/demo/pods?limit=1"),
		"argo":       httpOK(bearer(info.Tokens["admin"]), info.ArgoServerURL+"/api/v1/version"),
		"minio":      httpOK(nil, "http://"+info.ObjectStoreEndpoint+"/minio/health/ready"),
		"prometheus": httpOK(nil, info.PrometheusURL+"/-/ready"),
	}
	components := run.longLived(t)
	for _, must := range []string{"dwp-function", "watcher", "sse-router", "etcd", "kube-apiserver", "kwok", "workflow-controller", "argo"} {
		if _, ok := components[must]; !ok {
			t.Fatalf("no %s under make run (its processes: %v)", must, components)
		}
	}
	order := make([]string, 0, len(components))
	for name := range components {
		order = append(order, name)
	}
	slices.Sort(order)

	backIn := map[string]time.Duration{}
	for _, name := range order {
		pids := run.children(t)[name]
		if len(pids) == 0 {
			t.Fatalf("%s is not running before it is killed", name)
		}
		victim := pids[0]
		before, _ := strconv.Atoi(tab.Eval(`String(` + lines + `)`))
		killed := time.Now()
		if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
			t.Fatalf("kill %s (%d): %v", name, victim, err)
		}
		back := waitBack(t, run, name, pids, victim, ready[name], 60*time.Second)
		backIn[name] = back.Sub(killed)
		t.Logf("%s: killed, back in %s", name, backIn[name].Round(10*time.Millisecond))
		// The console carries on: the pod's next lines arrive in the same page.
		tab.WaitFor(name+" killed: the pod's next line in the console", lines+` > `+strconv.Itoa(before), 90*time.Second)
		if tab.Reloaded() {
			t.Fatalf("%s killed: the console was reloaded", name)
		}
	}
	tab.WaitFor("no notice left over the log once lines flow again", `!document.querySelector("#pod-log-status").firstChild`, 30*time.Second)
	// The pod's container never restarted: its log carries on across the plane's restart
	// rather than starting over.
	if n := tab.Eval(`String(document.querySelector("#pod-log-lines").textContent.split("starting server").length - 1)`); n != "1" {
		t.Errorf("the pod's log says %s times that it started, want once", n)
	}
	tab.Shot("after-the-kills")
	if !slices.Contains(strings.Split(tab.Eval(`window.connStates.join(",")`), ","), "resumed") {
		t.Error("the console never said it resumed after the router was killed")
	}
	if p := problems.List(); len(p) > 0 {
		t.Errorf("the console had problems: %v", p)
	}
	var report []string
	for _, name := range order {
		report = append(report, fmt.Sprintf("%s %s", name, backIn[name].Round(10*time.Millisecond)))
	}
	t.Logf("back after SIGKILL: %s", strings.Join(report, ", "))
	// The times above are the measure (on a quiet machine each process is back well
	// within 5 s); this bound, loose enough for a machine busy with other tests, catches
	// a restart that has stopped being prompt.
	for _, name := range order {
		if backIn[name] > 20*time.Second {
			t.Errorf("%s was back only after %s", name, backIn[name].Round(10*time.Millisecond))
		}
	}
}

// runningRun is `make run` under test.
type runningRun struct {
	cmd                                *exec.Cmd
	console, function, watcher, router string
}

var bannerAddr = regexp.MustCompile(`(task function|watcher|SSE router)\s+http://([0-9.:]+)/`)

// startRun starts dwp-run on free ports and waits for its banner.
func startRun(t *testing.T, root, bin, state, redisAddr string) *runningRun {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, "dwp-run"), "-repo", root, "-bin", bin, "-state", state,
		"-ports", "auto", "-redis", redisAddr, "-seed=false",
		"-archive-db", fmt.Sprintf("dwp_run_test_%d", os.Getpid()), "-drop-archive-db", "-grace", "5s")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var printed strings.Builder
	banner := make(chan *runningRun, 1)
	go func() {
		r := &runningRun{cmd: cmd}
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			mu.Lock()
			printed.WriteString(line + "\n")
			mu.Unlock()
			if m := bannerAddr.FindStringSubmatch(line); m != nil {
				switch m[1] {
				case "task function":
					r.function = m[2]
				case "watcher":
					r.watcher = m[2]
				case "SSE router":
					r.router = m[2]
				}
			}
			if strings.HasPrefix(line, "Console: ") {
				r.console = strings.Fields(line)[1]
				banner <- r
			}
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(90 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		mu.Lock()
		defer mu.Unlock()
		t.Logf("make run printed:\n%s", printed.String())
		for _, name := range []string{"cluster", "function", "watcher", "sse-router"} {
			if b, err := os.ReadFile(filepath.Join(state, "logs", name+".log")); err == nil && t.Failed() {
				t.Logf("%s.log (end):\n%s", name, tailOf(string(b), 3000))
			}
		}
	})
	select {
	case r := <-banner:
		if r.function == "" || r.watcher == "" || r.router == "" {
			t.Fatalf("the banner lacks an address: %+v", r)
		}
		return r
	case <-time.After(10 * time.Minute):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("make run printed no banner in 10 minutes:\n%s", printed.String())
		return nil
	}
}

// children maps the name of each executable running under dwp-run to its processes'
// PIDs.
func (r *runningRun) children(t *testing.T) map[string][]int {
	t.Helper()
	parents := map[int]int{}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, ok := parentOf(pid); ok {
			parents[pid] = ppid
		}
	}
	under := func(pid int) bool {
		for p := parents[pid]; p > 1; p = parents[p] {
			if p == r.cmd.Process.Pid {
				return true
			}
		}
		return false
	}
	found := map[string][]int{}
	for pid := range parents {
		if !under(pid) {
			continue
		}
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err != nil {
			continue
		}
		name := filepath.Base(exe)
		found[name] = append(found[name], pid)
	}
	for _, pids := range found {
		slices.Sort(pids)
	}
	return found
}

// longLived is children without the processes that come and go (a git or helm that a
// component runs for a moment): those seen with the same pids a second apart.
func (r *runningRun) longLived(t *testing.T) map[string][]int {
	t.Helper()
	first := r.children(t)
	time.Sleep(time.Second)
	kept := map[string][]int{}
	for name, pids := range r.children(t) {
		if slices.Equal(first[name], pids) {
			kept[name] = pids
		}
	}
	return kept
}

// parentOf reads a process's parent from /proc/PID/stat (the field after the command,
// which may itself hold spaces and parentheses).
func parentOf(pid int) (int, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0, false
	}
	ppid, err := strconv.Atoi(f[1])
	return ppid, err == nil
}

// waitBack waits until as many processes of name run as before, none of them the killed
// one, and, where it serves, it answers ready; it returns when.
func waitBack(t *testing.T, r *runningRun, name string, before []int, killed int, ready func(context.Context) error, timeout time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if now := r.children(t)[name]; len(now) >= len(before) && !slices.Contains(now, killed) {
			if ready == nil {
				return time.Now()
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			last = ready(ctx)
			cancel()
			if last == nil {
				return time.Now()
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s not back within %s (last check: %v)", name, timeout, last)
	return time.Time{}
}

func httpOK(rt http.RoundTripper, url string) func(context.Context) error {
	client := &http.Client{Transport: rt}
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", url, resp.Status)
		}
		return nil
	}
}

// bearer is a transport that sends token as the caller's.
type bearer string

func (b bearer) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set("Authorization", "Bearer "+string(b))
	return http.DefaultTransport.RoundTrip(req)
}

func adminConfig(t *testing.T, info controlplane.Info) *rest.Config {
	t.Helper()
	rc, err := clientcmd.BuildConfigFromFlags("", info.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

func adminTransport(t *testing.T, info controlplane.Info) http.RoundTripper {
	t.Helper()
	rt, err := rest.TransportFor(adminConfig(t, info))
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

func adminClient(t *testing.T, info controlplane.Info) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(adminConfig(t, info))
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// runningPod waits for a running pod matching selector and returns its name.
func runningPod(t *testing.T, kube kubernetes.Interface, ns, selector string) string {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		pods, err := kube.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
		if err == nil {
			for _, p := range pods.Items {
				if p.Status.Phase == "Running" {
					return p.Name
				}
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("no running pod %s in %s", selector, ns)
	return ""
}

// testBinDir is a bin folder with this tree's dwp-run and services freshly built, and the
// plane's components (built by `make test` before the tests) linked from the repository's.
func testBinDir(t *testing.T, root string) string {
	t.Helper()
	repoBin := filepath.Join(root, "bin")
	if _, err := os.Stat(filepath.Join(repoBin, "kube-apiserver")); err != nil {
		t.Fatalf("the plane's components are built into %s by make test (or make build): %v", repoBin, err)
	}
	dir := t.TempDir()
	build := exec.Command("go", "build", "-o", dir+string(filepath.Separator),
		"./sandbox/cmd/dwp-run", "./cmd/dwp-function", "./watcher", "./sse-router")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	entries, err := os.ReadDir(repoBin)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		target := filepath.Join(dir, e.Name())
		if _, err := os.Lstat(target); err == nil {
			continue // built above
		}
		if err := os.Symlink(filepath.Join(repoBin, e.Name()), target); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func repoRoot(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

func tailOf(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
