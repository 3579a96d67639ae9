// Package browsertest starts headless Chromium (Debian's, which make services installs)
// for tests that drive pages as a user would.
package browsertest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// Chromium is where the browser is expected.
const Chromium = "/usr/bin/chromium"

// New starts headless Chromium for t, closed when t ends, without the background
// connections a closed network refuses. A server the page streams from must be closed by
// a cleanup registered before this call, not by defer: closing it first would wait on the
// browser's open streams for ever.
func New(t testing.TB, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	if _, err := os.Stat(Chromium); err != nil {
		t.Fatalf("headless Chromium needed at %s (make services installs it): %v", Chromium, err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(Chromium), chromedp.NoSandbox,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), append(opts, extra...)...)
	t.Cleanup(cancelAlloc)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(cancelBrowser)
	return bctx
}

// Problems collects what a page reports as wrong: uncaught exceptions and console or
// log entries of level error (Content-Security-Policy violations among them).
type Problems struct {
	mu   sync.Mutex
	seen []string
}

// Watch starts collecting the problems of the browser tab of ctx.
func Watch(t testing.TB, ctx context.Context) *Problems {
	t.Helper()
	p := &Problems{}
	if err := chromedp.Listen(ctx, func(ev any) {
		var msg string
		switch e := ev.(type) {
		case *log.EventEntryAdded:
			if e.Entry.Level == log.EntryLevelError || strings.Contains(e.Entry.Text, "Content Security Policy") {
				msg = fmt.Sprintf("%s: %s (%s)", e.Entry.Source, e.Entry.Text, e.Entry.URL)
			}
		case *runtime.EventExceptionThrown:
			d := e.ExceptionDetails
			msg = "exception: " + d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
		}
		if msg != "" {
			p.mu.Lock()
			p.seen = append(p.seen, msg)
			p.mu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}
	return p
}

// List returns the problems seen so far.
func (p *Problems) List() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.seen...)
}
