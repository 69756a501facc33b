package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"time"
)

// poster sends one POST with a JSON body and reads the whole answer into
// resp, reusing its storage.
type poster interface {
	post(path string, body []byte, resp *[]byte) (status int, err error)
	close()
}

// rawConn is a minimal HTTP/1.1 client on one kept-alive connection, used by
// one worker only. Next to net/http's client it spares two goroutines and
// their hand-offs per request, so it takes less of the CPU the service and
// Postgres share with it. It understands only what the service answers:
// a status line, headers with Content-Length, and the body.
type rawConn struct {
	addr, host string
	head       []byte // the request up to the Content-Length value
	conn       net.Conn
	r          *bufio.Reader
	req        []byte
}

func newRawConn(base, secret string) (*rawConn, error) {
	u, err := url.Parse(base)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("the raw client needs an http://host:port URL, got %q", base)
	}
	c := &rawConn{addr: u.Host, host: u.Host}
	if _, _, err := net.SplitHostPort(c.addr); err != nil {
		c.addr = net.JoinHostPort(u.Host, "80")
	}
	c.head = []byte("Host: " + c.host + "\r\nAuthorization: Bearer " + secret +
		"\r\nContent-Type: application/json\r\nContent-Length: ")
	return c, nil
}

var (
	contentLength   = []byte("content-length:")
	connectionClose = []byte("connection: close")
)

func (c *rawConn) post(path string, body []byte, resp *[]byte) (int, error) {
	if c.conn == nil {
		conn, err := net.DialTimeout("tcp", c.addr, 5*time.Second)
		if err != nil {
			return 0, err
		}
		c.conn, c.r = conn, bufio.NewReaderSize(conn, 4096)
	}
	status, keep, err := c.roundTrip(path, body, resp)
	if err != nil || !keep {
		c.close()
	}
	return status, err
}

func (c *rawConn) roundTrip(path string, body []byte, resp *[]byte) (status int, keep bool, err error) {
	c.conn.SetDeadline(time.Now().Add(30 * time.Second))
	c.req = append(c.req[:0], "POST "...)
	c.req = append(c.req, path...)
	c.req = append(c.req, " HTTP/1.1\r\n"...)
	c.req = append(c.req, c.head...)
	c.req = strconv.AppendInt(c.req, int64(len(body)), 10)
	c.req = append(c.req, "\r\n\r\n"...)
	c.req = append(c.req, body...)
	if _, err := c.conn.Write(c.req); err != nil {
		return 0, false, err
	}

	line, err := c.r.ReadSlice('\n')
	if err != nil {
		return 0, false, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return 0, false, fmt.Errorf("bad status line %q", line)
	}
	if status, err = strconv.Atoi(string(line[9:12])); err != nil {
		return 0, false, fmt.Errorf("bad status line %q", line)
	}
	length, keep := -1, true
	for {
		line, err := c.r.ReadSlice('\n')
		if err != nil {
			return 0, false, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		if hasPrefixFold(line, contentLength) {
			if length, err = strconv.Atoi(string(bytes.TrimSpace(line[len(contentLength):]))); err != nil {
				return 0, false, fmt.Errorf("bad Content-Length %q", line)
			}
		} else if bytes.EqualFold(line, connectionClose) {
			keep = false
		}
	}
	if length < 0 {
		return 0, false, errors.New("answer without Content-Length (chunked answers are not supported)")
	}
	if cap(*resp) < length {
		*resp = make([]byte, length, 2*length)
	}
	*resp = (*resp)[:length]
	if _, err := io.ReadFull(c.r, *resp); err != nil {
		return 0, false, err
	}
	return status, keep, nil
}

// hasPrefixFold reports whether b starts with prefix, ignoring ASCII case.
func hasPrefixFold(b, prefix []byte) bool {
	return len(b) >= len(prefix) && bytes.EqualFold(b[:len(prefix)], prefix)
}

func (c *rawConn) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn, c.r = nil, nil
	}
}
