package main

import (
	"io"
	"net"
	"net/http"
	"sync/atomic"
)

// otlpSink is a stand-in for an OpenTelemetry collector: it takes OTLP/HTTP
// exports (POST /v1/traces) and throws them away, so that the service's cost
// of tracing can be measured with nothing of a collector's own on the
// machine. It answers an empty ExportTraceServiceResponse, which encodes as
// no bytes.
type otlpSink struct {
	srv               *http.Server
	url               string
	exports, received atomic.Int64
}

func startOTLPSink() (*otlpSink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &otlpSink{url: "http://" + ln.Addr().String()}
	s.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" {
			http.NotFound(w, r)
			return
		}
		n, _ := io.Copy(io.Discard, r.Body)
		s.exports.Add(1)
		s.received.Add(n)
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	})}
	go s.srv.Serve(ln)
	return s, nil
}

func (s *otlpSink) close() { s.srv.Close() }
