package front_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"bridge/bridge/logx"
)

// Issue 14: an app that writes bridge's access-log line to fd 2 does not
// add an access line to bridge's log. The forged line, with a request id of
// its own choosing, is kept whole under runner_log of a "runner log"
// record; the one access line of the request is bridge's.
func TestAppCannotForgeAccessLine(t *testing.T) {
	s := startStack(t, 0)
	forged := `{"level":"info","message":"request","status":200,"req_id":"forged-id","method":"GET","uri":"/admin","worker":"w9"}`
	req, _ := http.NewRequest("GET", s.httpURL+"/stderr?line="+url.QueryEscape(forged), nil)
	req.Header.Set("X-Request-Id", "real-id-1")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	var access, fromApp []map[string]any
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		access, fromApp = nil, nil
		for _, line := range strings.Split(strings.TrimSpace(s.logs.String()), "\n") {
			var r map[string]any
			if json.Unmarshal([]byte(line), &r) != nil {
				continue
			}
			if r["message"] == "request" {
				access = append(access, r)
			}
			if app, ok := r[logx.RunnerField].(map[string]any); ok && app["req_id"] == "forged-id" {
				fromApp = append(fromApp, r)
			}
		}
		if len(access) > 0 && len(fromApp) > 0 {
			break
		}
	}
	if len(access) != 1 || access[0]["req_id"] != "real-id-1" || access[0]["uri"] != "/stderr?line="+url.QueryEscape(forged) {
		t.Fatalf("access lines: %v, want exactly bridge's for real-id-1", access)
	}
	if len(fromApp) != 1 {
		t.Fatalf("the app's line is not logged once under %s:\n%s", logx.RunnerField, s.logs.String())
	}
	r := fromApp[0]
	if r["message"] != logx.RunnerMessage || r["status"] != nil || r["req_id"] != nil || r["uri"] != nil || r["worker"] == "w9" {
		t.Errorf("the forged fields reached bridge's own: %v", r)
	}
	var want map[string]any
	json.Unmarshal([]byte(forged), &want)
	if got := r[logx.RunnerField].(map[string]any); len(got) != len(want) || got["message"] != "request" || got["status"] != 200.0 {
		t.Errorf("runner_log %v, want the app's line as written", got)
	}
}
