package conformance

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"
)

// bootstrap is the broker under test, as run.py started it.
func bootstrap(t *testing.T) []string {
	t.Helper()
	servers := os.Getenv("KORVET_BOOTSTRAP")
	if servers == "" {
		t.Fatal("KORVET_BOOTSTRAP is not set: run the suite through conformance/go/run.py")
	}
	return strings.Split(servers, ",")
}

func uniqueName(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

// waitFor polls condition until it holds, failing the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, condition func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !condition() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sent is what a test produced to one record, to compare with what comes back.
type sent struct {
	key, value string
	headers    map[string]string
}
