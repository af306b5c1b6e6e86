package access

import (
	"regexp"
	"strconv"
)

// The server reports a refused publish or subscription in its log, as
// `[cid] - ... Publish Violation - Subject "S"`.
var violationRE = regexp.MustCompile(`cid:(\d+).*(Publish|Subscription) Violation - (?:Subject|Reply) "([^"]*)"`)

// ParseViolation reads a line of the server's error log: ok when it reports a permission
// violation, with the client's id, the kind ("Publish" or "Subscription") and the subject refused.
func ParseViolation(msg string) (client uint64, kind, subject string, ok bool) {
	m := violationRE.FindStringSubmatch(msg)
	if m == nil {
		return 0, "", "", false
	}
	client, _ = strconv.ParseUint(m[1], 10, 64)
	return client, m[2], m[3], true
}
