package fanout

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestHostAllowed(t *testing.T) {
	hosts := []string{"localhost:8080", "127.0.0.1:8080", "[::1]:8080", "App.Example.com", "::2"}
	tests := []struct {
		host string
		want bool
	}{
		{"localhost:8080", true},
		{"LOCALHOST:8080", true},
		{"127.0.0.1:8080", true},
		{"[::1]:8080", true},
		{"app.example.com", true},
		{"app.example.com:443", true},
		{"[::2]:9", true},
		{"::2", true},
		{"localhost:8081", false},
		{"localhost", false},
		{"evil.example:8080", false},
		{"127.0.0.1:18777", false},
		{"[::1]:8081", false},
		{"evil.example", false},
		{"app.example.com.evil.example", false},
		{"", false},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, hostAllowed(hosts, tt.host), "%q", tt.host)
	}
}

func TestWithHostsValidated(t *testing.T) {
	for _, hosts := range [][]string{{}, {""}, {"ok", ""}, {":8080"}} {
		_, err := NewSession("s", WithHosts(hosts...))
		assert.True(t, errors.Is(err, ErrInvalidOption), "%q: %v", hosts, err)
	}
	s, err := NewSession("s", WithHosts("localhost:8080", "[::1]"))
	if assert.NoError(t, err) {
		_ = s.Close()
	}
}
