package job_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/marvelo/marvelo/pipeline/job"
)

// argsJob is a job type with one arg of each kind DecodeArgs must handle.
type argsJob struct {
	Start float64      `json:"start"`
	Count int64        `json:"count"`
	Name  string       `json:"name" marvelo:"required"`
	Every job.Duration `json:"every"`
	Tags  []string     `json:"tags"`
	Plain int          // no tag: known by its field name

	Hidden int `json:"-"`
	secret int

	validated bool
}

func (a *argsJob) Validate() error {
	a.validated = true
	if a.Count > 100 {
		return errors.New("count must be at most 100")
	}
	return nil
}

func newArgsJob() any { return &argsJob{Start: 1, Count: 10, Every: job.Duration(time.Second)} }

func argsRegistry() *job.Registry {
	r := job.NewRegistry()
	r.Register("args", "a job with args", newArgsJob)
	r.Register("plain", "a job without Validate", func() any {
		return &struct {
			N int `json:"n"`
		}{N: 7}
	})
	return r
}

func TestRegistryNewArgs(t *testing.T) {
	tests := []struct {
		name    string
		args    map[string]any
		want    *argsJob // compared without the validated flag
		wantErr []string // substrings of the error, all required
	}{
		{
			name: "defaults kept",
			args: map[string]any{"name": "x"},
			want: &argsJob{Start: 1, Count: 10, Name: "x", Every: job.Duration(time.Second)},
		},
		{
			name: "all args",
			args: map[string]any{"name": "y", "start": 2.5, "count": int64(3), "every": "10ms", "tags": []any{"a", "b"}, "Plain": 4},
			want: &argsJob{Start: 2.5, Count: 3, Name: "y", Every: job.Duration(10 * time.Millisecond), Tags: []string{"a", "b"}, Plain: 4},
		},
		{
			name: "integer into a float arg",
			args: map[string]any{"name": "z", "start": 7},
			want: &argsJob{Start: 7, Count: 10, Name: "z", Every: job.Duration(time.Second)},
		},
		{
			name: "duration as a number of seconds",
			args: map[string]any{"name": "d", "every": 1.5},
			want: &argsJob{Start: 1, Count: 10, Name: "d", Every: job.Duration(1500 * time.Millisecond)},
		},
		{
			name: "duration null keeps the default",
			args: map[string]any{"name": "d", "every": nil},
			want: &argsJob{Start: 1, Count: 10, Name: "d", Every: job.Duration(time.Second)},
		},
		{
			name:    "unknown arg names it and the known ones",
			args:    map[string]any{"name": "x", "strat": 1},
			wantErr: []string{`args:`, `unknown arg "strat"`, "known: start, count, name, every, tags, Plain"},
		},
		{
			name:    "a json:\"-\" field is not an arg",
			args:    map[string]any{"name": "x", "Hidden": 1},
			wantErr: []string{`unknown arg "Hidden"`},
		},
		{
			name:    "mistyped arg",
			args:    map[string]any{"name": "x", "start": "one"},
			wantErr: []string{`arg "start": expected a number, got string`},
		},
		{
			name:    "fraction into an integer arg",
			args:    map[string]any{"name": "x", "count": 1.5},
			wantErr: []string{`arg "count": expected an integer, got 1.5`},
		},
		{
			name:    "missing required arg",
			args:    map[string]any{"start": 3},
			wantErr: []string{`missing required arg "name"`},
		},
		{
			name:    "missing required arg with no args at all",
			args:    nil,
			wantErr: []string{`missing required arg "name"`},
		},
		{
			name:    "every problem is reported",
			args:    map[string]any{"bogus": 1},
			wantErr: []string{`missing required arg "name"`, `unknown arg "bogus"`},
		},
		{
			name:    "Validate runs",
			args:    map[string]any{"name": "x", "count": 101},
			wantErr: []string{"args: count must be at most 100"},
		},
		{
			name:    "negative duration string names the arg",
			args:    map[string]any{"name": "x", "every": "-1s"},
			wantErr: []string{`arg "every"`, "negative"},
		},
		{
			name:    "negative duration number names the arg",
			args:    map[string]any{"name": "x", "every": -2},
			wantErr: []string{`arg "every"`, "negative"},
		},
		{
			name:    "bad duration string names the arg",
			args:    map[string]any{"name": "x", "every": "soon"},
			wantErr: []string{`arg "every"`, `"soon"`},
		},
		{
			name:    "duration of the wrong type names the arg",
			args:    map[string]any{"name": "x", "every": true},
			wantErr: []string{`arg "every"`},
		},
	}
	reg := argsRegistry()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := reg.New("args", tt.args)
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("New succeeded: %+v", got)
				}
				if !strings.HasPrefix(err.Error(), "args: ") {
					t.Errorf("error %q does not start with the type name", err)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not contain %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			j, ok := got.(*argsJob)
			if !ok {
				t.Fatalf("New returned %T", got)
			}
			if !j.validated {
				t.Error("Validate was not called")
			}
			j.validated = false
			if !reflect.DeepEqual(j, tt.want) {
				t.Errorf("got %+v, want %+v", j, tt.want)
			}
		})
	}
}

func TestRegistryNewWithoutValidate(t *testing.T) {
	got, err := argsRegistry().New("plain", map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	if n := reflect.ValueOf(got).Elem().Field(0).Int(); n != 7 {
		t.Errorf("default N = %d, want 7", n)
	}
}

func TestRegistryUnknownType(t *testing.T) {
	_, err := argsRegistry().New("nope", nil)
	if err == nil {
		t.Fatal("New of an unknown type succeeded")
	}
	for _, w := range []string{`unknown job type "nope"`, "args, plain"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
}

func TestRegistryNamesAndTypes(t *testing.T) {
	r := job.NewRegistry()
	for _, n := range []string{"zeta", "alpha", "mid"} {
		r.Register(n, "about "+n, newArgsJob)
	}
	if got, want := r.Names(), []string{"alpha", "mid", "zeta"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Names = %v, want %v", got, want)
	}
	types := r.Types()
	if len(types) != 3 || types[0].Name != "alpha" || types[0].Description != "about alpha" || types[0].New == nil {
		t.Errorf("Types = %+v", types)
	}
	if !r.Has("mid") || r.Has("other") {
		t.Error("Has is wrong")
	}
}

func TestRegisterPanics(t *testing.T) {
	tests := []struct {
		name      string
		register  []string
		wantPanic string
	}{
		{"duplicate", []string{"a", "b", "a"}, `"a" registered twice`},
		{"empty name", []string{""}, "empty name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := job.NewRegistry()
			defer func() {
				p := recover()
				if p == nil {
					t.Fatal("Register did not panic")
				}
				if msg, _ := p.(string); !strings.Contains(msg, tt.wantPanic) {
					t.Errorf("panic %v does not contain %q", p, tt.wantPanic)
				}
			}()
			for _, n := range tt.register {
				r.Register(n, "", newArgsJob)
			}
		})
	}
}

// Args go into a pointer to a struct; a job that takes no args may be of any type.
func TestDecodeArgsNeedsStructPointer(t *testing.T) {
	var n int
	for _, dst := range []any{argsJob{}, &n} {
		if err := job.DecodeArgs(dst, map[string]any{"start": 1}); err == nil {
			t.Errorf("DecodeArgs(%T) with args succeeded", dst)
		}
		if err := job.DecodeArgs(dst, nil); err != nil {
			t.Errorf("DecodeArgs(%T) without args: %v", dst, err)
		}
	}
	if err := job.DecodeArgs(nil, nil); err == nil {
		t.Error("DecodeArgs(nil) succeeded")
	}
}

func TestDuration(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{`"10ms"`, 10 * time.Millisecond, ""},
		{`"1.5s"`, 1500 * time.Millisecond, ""},
		{`"0s"`, 0, ""},
		{`2`, 2 * time.Second, ""},
		{`0.04`, 40 * time.Millisecond, ""},
		{`0`, 0, ""},
		{`"-10ms"`, 0, "negative"},
		{`-0.5`, 0, "negative"},
		{`"ten"`, 0, `"ten"`},
		{`true`, 0, "number of seconds"},
		{`[1]`, 0, "number of seconds"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var d job.Duration
			err := d.UnmarshalJSON([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if time.Duration(d) != tt.want {
				t.Errorf("got %v, want %v", time.Duration(d), tt.want)
			}
		})
	}
}

func TestDurationNullIsNoOp(t *testing.T) {
	d := job.Duration(time.Minute)
	if err := d.UnmarshalJSON([]byte("null")); err != nil {
		t.Fatal(err)
	}
	if time.Duration(d) != time.Minute {
		t.Errorf("null changed the duration to %v", time.Duration(d))
	}
}

func TestDurationMarshalRoundTrip(t *testing.T) {
	d := job.Duration(1500 * time.Millisecond)
	b, err := d.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `"1.5s"` {
		t.Errorf("MarshalJSON = %s", b)
	}
	var back job.Duration
	if err := back.UnmarshalJSON(b); err != nil || back != d {
		t.Errorf("round trip: %v, %v", time.Duration(back), err)
	}
}
