// Package ssebench benchmarks the SSE router as it runs in production: the real
// bin/sse-router process, configured by its environment, authenticating every stream
// against a real local control plane, with tens of thousands of real sockets.
//
// The driver (Run) sets up namespaces, pods and kwok-served log files on the plane,
// starts router processes, and spreads streams over worker processes (RunWorker) that
// it talks to with JSON lines on their stdin and stdout; a worker holds up to about
// nineteen thousand sockets, the open-files limit of one process. Workers speak a
// minimal HTTP/1.1 and parse SSE by hand, with one small buffer per stream, so that the
// client side stays cheap next to the router under test.
//
// Every event the driver makes carries a marker, "dwpbench:<seq>:<unix nanos>;": in the
// text of an appended log line, or in an annotation of a watched pod (a `modified`
// event carries the object). Workers time each first delivery of a sequence number
// against it (the processes share one clock) into log-linear histograms, which the
// driver merges for percentiles. The router is only ever seen through its HTTP API,
// /metrics and /proc.
package ssebench
