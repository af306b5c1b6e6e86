package pipeline_test

import (
	"strings"
	"testing"
)

// Tests of the JSON reader (jsontree.go): malformed JSON, reported by line, column and byte.

func TestParseMalformedJSON(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{`{"name": "x",}`, "invalid JSON at line 1, column 14 (byte 13): invalid character '}' looking for beginning of object key string"},
		{"{\n  \"name\": \"x\"\n  \"jobs\": []\n}", "invalid JSON at line 3, column 3 (byte 18): invalid character '\"' after object key:value pair"},
		{`{"name": "x"`, "invalid JSON at line 1, column 13 (byte 12): unexpected end of input"},
		{`{"name": "x"} {}`, "invalid JSON at line 1, column 15 (byte 14): unexpected data after the document"},
		{`{"name": "x"} x`, "invalid JSON at line 1, column 15 (byte 14): "},
		{`{"a": tru}`, "invalid JSON at line 1, column 8 (byte 7): invalid character '}' in literal true"},
		{`{"jobs": [{"args": {"a": ` + strings.Repeat("[", 300), "nested deeper than 256 levels"},
		{"{" + strings.Repeat(`"a":{`, 100000), "nested deeper than 256 levels"},
		{"   \n ", "empty document"},
		{"", "empty document"},
	} {
		got := parseProblems(t, []byte(tc.doc))
		if len(got) != 1 || !strings.Contains(got[0], tc.want) {
			t.Errorf("%.40q: got %q, want %q", tc.doc, got, tc.want)
		}
	}
}
