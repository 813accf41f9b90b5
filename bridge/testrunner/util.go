package testrunner

import (
	"net/url"
	"strconv"
)

func query(raw string) map[string]string {
	m := map[string]string{}
	vals, _ := url.ParseQuery(raw)
	for k, v := range vals {
		m[k] = v[0]
	}
	return m
}

func atoi(s string, def int) int {
	if n, err := strconv.Atoi(s); err == nil {
		return n
	}
	return def
}
