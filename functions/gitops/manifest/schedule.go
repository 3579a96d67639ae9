package manifest

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// timeZonePart is a component of an IANA time zone name, as the API server accepts it.
var timeZonePart = regexp.MustCompile(`^[A-Za-z\.\-_0-9+]{1,14}$`)

// checkTimeZone validates a CronJob's time zone as the API server does (its
// validateTimeZone), and returns what is wrong.
func checkTimeZone(tz string) string {
	for part := range strings.SplitSeq(tz, "/") {
		if part == "." || part == ".." || strings.HasPrefix(part, "-") || !timeZonePart.MatchString(part) {
			return "unknown time zone " + tz
		}
	}
	if strings.EqualFold(tz, "Local") {
		return "must be an explicit IANA time zone, not Local"
	}
	if _, err := time.LoadLocation(tz); err != nil {
		return err.Error()
	}
	return ""
}

// checkSchedule validates a schedule as the API server does, and returns what is wrong.
func checkSchedule(s string) (detail string) {
	// The time zone belongs in its own field; the API server rejects any TZ in a schedule.
	if strings.Contains(s, "TZ") {
		return "must not contain TZ or CRON_TZ; use time-zone"
	}
	defer func() {
		// The parser panics on some malformed input; the API server recovers likewise.
		if p := recover(); p != nil {
			detail = fmt.Sprintf("not a cron schedule: %v", p)
		}
	}()
	if _, err := cron.ParseStandard(s); err != nil {
		return "not a cron schedule: " + err.Error()
	}
	return ""
}
