package front

import (
	"bytes"
	"fmt"
	"net/http"
	"strconv"

	"bridge/bridge/request"
	"bridge/bridge/uwsgi"
)

// canonical turns nginx's vars into the canonical request (U3–U16). nginx's
// vars already are a CGI environment; this merges, cleans and fills them.
func (u *Uwsgi) canonical(pkt *uwsgi.Packet) (*request.Request, error) {
	l := newVarList(len(pkt.Vars) + 4)
	var https, reqScheme, uwsgiScheme []byte
	for _, v := range pkt.Vars {
		name := v.Name
		switch {
		case bytes.HasPrefix(name, []byte("UWSGI_")):
			// Magic vars would let request data pick code to load: never
			// honoured (U16). UWSGI_SCHEME only picks the url scheme.
			if string(name) == "UWSGI_SCHEME" {
				uwsgiScheme = v.Value
			}
			continue
		case string(name) == "HTTP_TRANSFER_ENCODING":
			// nginx has de-chunked the body and set CONTENT_LENGTH (U10).
			continue
		case string(name) == "HTTP_CONTENT_TYPE" || string(name) == "HTTP_CONTENT_LENGTH":
			continue // W6
		case (string(name) == "CONTENT_TYPE" || string(name) == "CONTENT_LENGTH") && len(v.Value) == 0:
			continue // every GET carries them empty (U8)
		case string(name) == "HTTPS":
			https = v.Value
		case string(name) == "REQUEST_SCHEME":
			reqScheme = v.Value
		}
		l.add(name, v.Value)
	}

	method := l.get("REQUEST_METHOD")
	if len(method) == 0 {
		return nil, request.Errorf(http.StatusBadRequest, "uwsgi request without REQUEST_METHOD", nil)
	}
	var cl int64
	if v := l.get("CONTENT_LENGTH"); v != nil {
		n, err := strconv.ParseInt(string(v), 10, 64)
		if !digits(v) || err != nil {
			return nil, request.Errorf(http.StatusBadRequest, "bad CONTENT_LENGTH", fmt.Errorf("%q", v))
		}
		cl = n
	}

	scheme := "http" // U14
	switch {
	case bytes.EqualFold(https, []byte("on")) || string(https) == "1":
		scheme = "https"
	case string(reqScheme) == "http" || string(reqScheme) == "https":
		scheme = string(reqScheme)
	case string(uwsgiScheme) == "http" || string(uwsgiScheme) == "https":
		scheme = string(uwsgiScheme)
	}

	l.splitScript()
	if !l.has("QUERY_STRING") {
		l.set("QUERY_STRING", nil)
	}
	l.ensure("SERVER_PROTOCOL", []byte("HTTP/1.1"))
	if len(l.get("SERVER_NAME")) == 0 { // U15
		host, _ := hostPort(string(l.get("HTTP_HOST")))
		if host == "" {
			host = u.cfg.ServerName
		}
		l.set("SERVER_NAME", []byte(host))
	}
	l.ensure("SERVER_PORT", []byte(defaultPort(scheme)))

	uri := l.get("REQUEST_URI")
	if uri == nil {
		uri = l.get("PATH_INFO")
	}
	return &request.Request{
		ID:            requestID(l.get("HTTP_X_REQUEST_ID")),
		Vars:          l.vars,
		Scheme:        scheme,
		ContentLength: cl,
		Method:        string(method),
		URI:           string(uri),
	}, nil
}
