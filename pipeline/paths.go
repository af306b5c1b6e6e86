package pipeline

import "strconv"

// Paths name a place in a document (jobs[3].exec.mode, args["odd key"]) in problems. The
// readers, the builder, the args check and Locate all build them, so they live apart from each.

func indexPath(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// joinKey extends a path by an object key: a.b for plain keys, a["odd key"] for the rest.
func joinKey(path, key string) string {
	if !isPlainKey(key) {
		return path + "[" + strconv.Quote(key) + "]"
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

func isPlainKey(key string) bool {
	if key == "" || key[0] >= '0' && key[0] <= '9' {
		return false
	}
	for _, c := range key {
		if !(c == '_' || c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
