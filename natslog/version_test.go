package natslog

import "testing"

func TestAtLeast(t *testing.T) {
	for _, tc := range []struct {
		v    string
		want bool
	}{
		{"2.9.10", false},
		{"2.9.21", true},
		{"2.9.22", true},
		{"2.10.0", true},
		{"2.15.2-beta.1", true},
		{"1.99.99", false},
		{"3.0.0", true},
		{"", false},
	} {
		if got := atLeast(tc.v, 2, 9, 21); got != tc.want {
			t.Errorf("atLeast(%q) = %v, want %v", tc.v, got, tc.want)
		}
	}
}
