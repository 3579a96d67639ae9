// Package consoletest drives the router's web console in headless Chromium, as a person
// would: one Tab per browser tab, with waits on what the page shows and screenshots as
// test artifacts.
package consoletest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Tab is one browser tab on the console.
type Tab struct {
	t    testing.TB
	ctx  context.Context
	name string
	dir  string
	n    int
}

// NewTab returns a tab driven through ctx (a chromedp context); its screenshots go to dir,
// named after name.
func NewTab(t testing.TB, ctx context.Context, name, dir string) *Tab {
	return &Tab{t: t, ctx: ctx, name: name, dir: dir}
}

// Eval evaluates js, an expression that gives a string.
func (p *Tab) Eval(js string) string {
	p.t.Helper()
	v, err := chromedp.Run(p.ctx, chromedp.Evaluate[string](js))
	if err != nil {
		p.Fail("evaluate %s: %v", js, err)
	}
	return v
}

// WaitFor polls js (a boolean expression) until it holds, or fails the test.
func (p *Tab) WaitFor(what, js string, timeout time.Duration) {
	p.t.Helper()
	if _, err := chromedp.Run(p.ctx, chromedp.Poll[bool](js, chromedp.WithPollingTimeout(timeout))); err != nil {
		p.Fail("%s: not within %s (%v)", what, timeout, err)
	}
}

// Holds polls js (a boolean expression) until it holds or the timeout passes, and says
// which.
func (p *Tab) Holds(js string, timeout time.Duration) bool {
	_, err := chromedp.Run(p.ctx, chromedp.Poll[bool](js, chromedp.WithPollingTimeout(timeout)))
	return err == nil
}

// Fail fails the test with a screenshot and what the page shows.
func (p *Tab) Fail(format string, args ...any) {
	p.t.Helper()
	p.Shot("failed")
	text, _ := chromedp.Run(p.ctx, chromedp.Evaluate[string](`document.body.innerText.slice(0, 3000)`))
	p.t.Fatalf("%s: %s\nthe page shows:\n%s", p.name, fmt.Sprintf(format, args...), text)
}

// Shot writes a screenshot of the whole page as an artifact.
func (p *Tab) Shot(what string) {
	p.t.Helper()
	png, err := chromedp.Run(p.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		p.t.Logf("screenshot %s: %v", what, err)
		return
	}
	p.n++
	file := filepath.Join(p.dir, fmt.Sprintf("%s-%02d-%s.png", p.name, p.n, what))
	if err := os.WriteFile(file, png, 0o644); err != nil {
		p.t.Fatal(err)
	}
	p.t.Logf("screenshot: %s", file)
}

// Open navigates to url.
func (p *Tab) Open(url string) {
	p.t.Helper()
	if err := chromedp.Do(p.ctx, chromedp.Navigate(url)); err != nil {
		p.Fail("open %s: %v", url, err)
	}
}

// SignIn opens the console and signs in with the token, as a person pastes it.
func (p *Tab) SignIn(consoleURL, token string) {
	p.t.Helper()
	p.Open(consoleURL)
	p.WaitFor("the sign-in form", `!!document.querySelector("#token")`, 15*time.Second)
	p.Eval(fmt.Sprintf(`document.querySelector("#token").value = %s; document.querySelector("#signin button[type=submit]").click(); ""`, JS(token)))
	p.WaitFor("signed in", `!!document.querySelector("#connection")`, 20*time.Second)
}

// GoTo moves the console to a view (a location hash such as "#/ns/demo").
func (p *Tab) GoTo(hash string) {
	p.t.Helper()
	p.Eval(fmt.Sprintf(`location.hash = %s; ""`, JS(hash)))
}

// WatchConnection records every state the connection badge shows into
// window.connStates, and sets window.reloaded to false, which a reload would undo.
func (p *Tab) WatchConnection() {
	p.t.Helper()
	p.Eval(`window.reloaded = false; window.connStates = []; new MutationObserver(() => window.connStates.push(document.querySelector("#connection").dataset.state)).observe(document.querySelector("#connection"), {attributes: true, childList: true}); ""`)
}

// Reloaded reports whether the page was loaded again since WatchConnection.
func (p *Tab) Reloaded() bool {
	p.t.Helper()
	return p.Eval(`window.reloaded === false ? "" : "reloaded"`) != ""
}

// JS quotes s as a JavaScript string literal.
func JS(s string) string { b, _ := json.Marshal(s); return string(b) }
