package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// logLine is the part of bridge's JSON log lines the soak reads: "worker
// ready" lines (worker name and pid) and "request" lines (req_id, worker,
// status, error, duration, time).
type logLine struct {
	Message string    `json:"message"`
	Worker  string    `json:"worker"`
	PID     int       `json:"pid"`
	ReqID   string    `json:"req_id"`
	Status  int       `json:"status"`
	Error   string    `json:"error"`
	Took    float64   `json:"duration_ms"`
	Aborted bool      `json:"aborted"`
	Time    time.Time `json:"time"`
}

// held is an attack request as bridge logged it: the worker that had it,
// from when to when.
type held struct {
	id, worker string
	from, to   time.Time
}

// annotate fills in Worker, WorkerPID, Logged and Behind of the failures of
// bridge name from its log: which worker had each failed request, that
// worker's pid from its "worker ready" line (worker names are unique over a
// bridge's life: g3.w1.2 is generation 3, slot 1, second restart), what
// bridge logged, and which attack request had the same worker meanwhile.
// It returns the workers' names by pid, for the kills.
func annotate(path, name string, fails []failure) map[int]string {
	names := map[int]string{}
	want := map[string][]int{}
	for i, f := range fails {
		if f.Runner == name {
			want[f.ID] = append(want[f.ID], i)
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return names
	}
	defer f.Close()
	pids := map[string]int{}
	var attacks []held
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Bytes()
		ready := bytes.Contains(line, []byte(`"worker ready"`))
		attack := bytes.Contains(line, []byte(`"req_id":"soak-attack-`))
		if !ready && !attack && (len(want) == 0 || !bytes.Contains(line, []byte(`"req_id":"soak-`))) {
			continue
		}
		var l logLine
		if json.Unmarshal(line, &l) != nil {
			continue
		}
		switch {
		case ready && l.PID != 0:
			pids[l.Worker] = l.PID
			names[l.PID] = l.Worker
		case l.Message != "request":
		case attack:
			if l.Worker != "" {
				took := time.Duration(l.Took * float64(time.Millisecond))
				attacks = append(attacks, held{l.ReqID, l.Worker, l.Time.Add(-took), l.Time})
			}
		default:
			for _, i := range want[l.ReqID] {
				fails[i].Worker = l.Worker
				fails[i].Logged = statusText(l)
			}
		}
	}
	for i := range fails {
		fl := &fails[i]
		if fl.Runner != name || fl.Worker == "" {
			continue
		}
		fl.WorkerPID = pids[fl.Worker]
		var most time.Duration
		for _, a := range attacks {
			if a.worker != fl.Worker {
				continue
			}
			if d := overlap(fl.Start, fl.End, a.from, a.to); d > most {
				most, fl.Behind = d, a.id
			}
		}
	}
	return names
}

// overlap is how long [a0, a1] and [b0, b1] share.
func overlap(a0, a1, b0, b1 time.Time) time.Duration {
	from, to := a0, a1
	if b0.After(from) {
		from = b0
	}
	if b1.Before(to) {
		to = b1
	}
	return max(to.Sub(from), 0)
}

func statusText(l logLine) string {
	s := "status " + strconv.Itoa(l.Status)
	if l.Aborted {
		s += ", aborted"
	}
	if l.Error != "" {
		s += ": " + l.Error
	}
	return s
}

// gzipLogs compresses each file of dir larger than 1 MiB into FILE.gz
// (zgrep reads them) and removes the original.
func gzipLogs(dir string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		info, err := e.Info()
		if err != nil || e.IsDir() || info.Size() < 1<<20 || strings.HasSuffix(e.Name(), ".gz") {
			continue
		}
		src := dir + "/" + e.Name()
		if gzipFile(src, src+".gz") == nil {
			_ = os.Remove(src)
		}
	}
}

func gzipFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	zw := gzip.NewWriter(out)
	_, err = io.Copy(zw, in)
	if cerr := zw.Close(); err == nil {
		err = cerr
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(dst)
	}
	return err
}
