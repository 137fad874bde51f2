package metrics_test

import (
	"os"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/require"
)

// The alerts in prometheus/alerts.yml are valid rules on the metrics this
// package exposes, and fire, or stay quiet, as alerts_test.yml expects.
func TestAlertRules(t *testing.T) {
	path, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			require.FailNow(t, "promtool not found; scripts/prometheus.sh installs it")
		}
		t.Skip("promtool not found; scripts/prometheus.sh installs it")
	}
	for _, args := range [][]string{
		{"check", "rules", "alerts.yml"},
		{"test", "rules", "alerts_test.yml"},
	} {
		cmd := exec.Command(path, args...)
		cmd.Dir = "prometheus"
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "promtool %v:\n%s", args, out)
	}
}
