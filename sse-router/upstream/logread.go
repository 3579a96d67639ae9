package upstream

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"github.com/dwp-sre/dwp-sre/sse-router/api"
	"io"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// maxLineBytes bounds one log line; the rest of a longer line is dropped.
const maxLineBytes = 256 << 10

// maxBatch bounds the lines published at once.
const maxBatch = 512

// logLine is one line of a container's log.
type logLine struct {
	pos  api.LogPos
	time time.Time
	text string
}

// lineParser gives the lines of one log, read in order, their positions: the
// timestamp the kubelet prefixes (asked with timestamps=true) and a rank among lines
// with the same timestamp.
type lineParser struct {
	last api.LogPos
	seen bool
}

// parse splits "<RFC 3339 timestamp> <text>". A line without a valid timestamp keeps the
// previous line's, one rank further.
func (p *lineParser) parse(raw []byte) logLine {
	raw = bytes.TrimSuffix(raw, []byte("\n"))
	raw = bytes.TrimSuffix(raw, []byte("\r"))
	var (
		ts   time.Time
		text = raw
		ok   bool
	)
	if i := bytes.IndexByte(raw, ' '); i > 0 {
		if t, err := time.Parse(time.RFC3339Nano, string(raw[:i])); err == nil {
			ts, text, ok = t, raw[i+1:], true
		}
	} else if t, err := time.Parse(time.RFC3339Nano, string(raw)); err == nil {
		ts, text, ok = t, nil, true
	}
	var pos api.LogPos
	switch {
	case ok && (!p.seen || ts.UnixNano() != p.last.Nanos):
		pos = api.LogPos{Nanos: ts.UnixNano()}
	case ok:
		pos = api.LogPos{Nanos: ts.UnixNano(), Rank: p.last.Rank + 1}
	default:
		pos = api.LogPos{Nanos: p.last.Nanos, Rank: p.last.Rank + 1}
		ts = p.last.Time()
	}
	p.last, p.seen = pos, true
	return logLine{pos: pos, time: ts.UTC(), text: string(text)}
}

// readLines reads a log stream, giving each batch of lines to emit: what is readable
// at once (a burst, a backlog) goes in one batch. Lines at or before skipThrough are
// dropped (they were seen before a reconnect). It returns nil at the end of the stream.
func readLines(body io.Reader, p *lineParser, skipThrough *api.LogPos, emit func([]logLine)) error {
	br := bufio.NewReaderSize(body, 32<<10)
	var (
		batch []logLine
		buf   []byte
	)
	flush := func() {
		if len(batch) > 0 {
			emit(batch)
			batch = nil
		}
	}
	for {
		chunk, err := br.ReadSlice('\n')
		if len(buf)+len(chunk) <= maxLineBytes {
			buf = append(buf, chunk...)
		} else if len(buf) < maxLineBytes {
			buf = append(buf, chunk[:maxLineBytes-len(buf)]...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if len(buf) > 0 && (err == nil || errors.Is(err, io.EOF)) {
			l := p.parse(buf)
			buf = buf[:0]
			if skipThrough == nil || skipThrough.Less(l.pos) {
				// Once past the old position, everything is new, even a line whose
				// clock went backwards.
				skipThrough = nil
				batch = append(batch, l)
			}
		}
		if err != nil {
			flush()
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if br.Buffered() == 0 || len(batch) >= maxBatch {
			flush()
		}
	}
}

// logRequest is the options of one log request.
type logRequest struct {
	container string
	follow    bool
	tail      *int64
	since     *time.Time
}

func (r logRequest) options() *corev1.PodLogOptions {
	o := &corev1.PodLogOptions{Container: r.container, Follow: r.follow, Timestamps: true, TailLines: r.tail}
	if r.since != nil {
		// The API carries whole seconds: the lines of the second are read again and
		// skipped by position.
		t := metav1.NewTime(r.since.Truncate(time.Second))
		o.SinceTime = &t
	}
	return o
}

func openLog(ctx context.Context, cs kubernetes.Interface, ns, pod string, r logRequest) (io.ReadCloser, error) {
	return cs.CoreV1().Pods(ns).GetLogs(pod, r.options()).Stream(ctx)
}

// fetchLog reads a log to its current end (no follow).
func fetchLog(ctx context.Context, cs kubernetes.Interface, ns, pod string, r logRequest, skipThrough *api.LogPos) ([]logLine, error) {
	var out []logLine
	err := streamLog(ctx, cs, ns, pod, r, skipThrough, func(b []logLine) { out = append(out, b...) })
	return out, err
}

// streamLog reads a log to its current end (no follow), giving emit the lines after
// skipThrough batch by batch, so that a large log need not be held whole.
func streamLog(ctx context.Context, cs kubernetes.Interface, ns, pod string, r logRequest, skipThrough *api.LogPos, emit func([]logLine)) error {
	r.follow = false
	body, err := openLog(ctx, cs, ns, pod, r)
	if err != nil {
		return err
	}
	defer body.Close()
	return readLines(body, &lineParser{}, skipThrough, emit)
}

// logProblem classifies a failed log request: gone (the pod does not exist), waiting
// (the container has not started yet: try again soon), or fatal (the request can never
// succeed, e.g. an unknown container).
func logProblem(err error) (gone, waiting, fatal bool) {
	switch {
	case apierrors.IsNotFound(err):
		return true, false, false
	case apierrors.IsBadRequest(err):
		// The API server refuses a container the pod does not have, or a missing
		// container name: asking again cannot help. Any other refusal (a container
		// waiting to start, a kubelet without the log yet) passes with time.
		msg := err.Error()
		if strings.Contains(msg, "is not valid for pod") || strings.Contains(msg, "must be specified") {
			return false, false, true
		}
		return false, true, false
	}
	return false, false, false
}

// containerDone reports whether a container has terminated for good: it terminated and
// its pod will not restart it.
func containerDone(pod *corev1.Pod, container string) bool {
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return true
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == container && cs.State.Terminated != nil {
			return pod.Spec.RestartPolicy == corev1.RestartPolicyNever ||
				(pod.Spec.RestartPolicy == corev1.RestartPolicyOnFailure && cs.State.Terminated.ExitCode == 0)
		}
	}
	return false
}

// containerStarted reports whether a container has started (so it has a log).
func containerStarted(pod *corev1.Pod, container string) bool {
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == container {
			return cs.State.Running != nil || cs.State.Terminated != nil || cs.LastTerminationState.Terminated != nil
		}
	}
	return pod.Status.Phase == corev1.PodRunning || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
}

// defaultContainer is the container `kubectl logs` picks: the annotated default, or the
// first.
func defaultContainer(pod *corev1.Pod) (string, error) {
	if c := pod.Annotations["kubectl.kubernetes.io/default-container"]; c != "" {
		return c, nil
	}
	if len(pod.Spec.Containers) == 0 {
		return "", publicErrorf(api.CodeInvalid, "pod %s has no containers", pod.Name)
	}
	return pod.Spec.Containers[0].Name, nil
}

type logLinePayload struct {
	Type      string `json:"type"`
	Time      string `json:"time"`
	Pod       string `json:"pod,omitempty"`
	Node      string `json:"node,omitempty"`
	Container string `json:"container,omitempty"`
	Line      string `json:"line"`
}
