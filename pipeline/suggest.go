package pipeline

import "strings"

// Suggestions for misspelled names (" (did you mean block_count?)"): the builder uses them for
// unknown keys, args.go for unknown args and validate.go for unknown job types, so they live
// apart from each.

// didYouMean suggests the known key closest to an unknown one: " (did you mean block_count?)",
// or "" when none is close.
func didYouMean(key string, known []string) string {
	if best := closest(key, known); best != "" {
		return " (did you mean " + best + "?)"
	}
	return ""
}

// closest is the known name closest to an unknown one: the same but for case and separators,
// or at most two edits away; "" when none is. Unknown keys, args and job types use it.
func closest(name string, known []string) string {
	if len(name) > 64 {
		return ""
	}
	best, bestDist := "", 3
	for _, k := range known {
		d := editDistance(name, k)
		if normalizeKey(name) == normalizeKey(k) {
			d = 0
		}
		if d < bestDist {
			best, bestDist = k, d
		}
	}
	return best
}

// keySeparators are ignored when comparing keys: blockCount, block-count and BLOCK_COUNT all
// suggest block_count.
var keySeparators = strings.NewReplacer("_", "", "-", "", " ", "")

func normalizeKey(k string) string { return keySeparators.Replace(strings.ToLower(k)) }

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
