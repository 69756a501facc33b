package http_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/signin-tokens/signin-tokens/api"
	apihttp "github.com/signin-tokens/signin-tokens/internal/http"
	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// The sign-in page answers HTML, which the validator reads as a string.
func init() { openapi3filter.RegisterBodyDecoder("text/html", openapi3filter.FileBodyDecoder) }

// openAPI is the document api/openapi.yaml, loaded and validated once.
var openAPI = sync.OnceValues(func() (*openapiDoc, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(api.OpenAPI)
	if err != nil {
		return nil, fmt.Errorf("load api/openapi.yaml: %w", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		return nil, fmt.Errorf("api/openapi.yaml is not a valid OpenAPI document: %w", err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("route api/openapi.yaml: %w", err)
	}
	return &openapiDoc{doc: doc, router: router}, nil
})

type openapiDoc struct {
	doc    *openapi3.T
	router routers.Router
}

// validating wraps the API under test so that every request it serves, from
// any test in this package, and every answer it gives are checked against
// the OpenAPI document:
//   - every answer must match the operation's documented response for its
//     status (status documented, content type, headers, body schema);
//   - a request the document refuses must be refused by the server with a
//     4xx, never served; one it accepts must not be refused as malformed;
//   - a path or method the document does not know must be answered 404 or
//     405 with the documented error body.
func validating(t *testing.T, next http.Handler) http.Handler {
	t.Helper()
	spec, err := openAPI()
	if err != nil {
		t.Fatal(err)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("%s %s: read request body: %v", r.Method, r.URL, err)
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
		if err := spec.check(r, body, rec); err != nil {
			t.Errorf("OpenAPI: %s %s answered %d: %v\nrequest body: %.200q\nresponse: %.400s", r.Method, r.URL.RequestURI(), rec.Code, err, body, rec.Body.Bytes())
		}
	})
}

// check validates one exchange against the document.
func (s *openapiDoc) check(r *http.Request, body []byte, rec *httptest.ResponseRecorder) error {
	ctx := context.Background()
	req := r.Clone(ctx)
	req.Body = io.NopCloser(bytes.NewReader(body))
	// The server tolerates repeated slashes and a trailing slash on every
	// path; the document lists each path once, in its clean form.
	for strings.Contains(req.URL.Path, "//") {
		req.URL.Path = strings.ReplaceAll(req.URL.Path, "//", "/")
		req.URL.RawPath = ""
	}
	if p := req.URL.Path; len(p) > 1 && strings.HasSuffix(p, "/") {
		req.URL.Path = strings.TrimRight(p, "/")
		req.URL.RawPath = ""
	}
	// As documented, a body that starts with '{' is read as JSON whatever its
	// Content-Type says.
	// The document's validator reads JSON leniently (trailing data, invalid
	// UTF-8); a body that is not strict JSON is malformed whatever it says.
	wellFormed := true
	if t := bytes.TrimSpace(body); len(t) > 0 && t[0] == '{' {
		req.Header.Set("Content-Type", "application/json")
		wellFormed = json.Valid(t) && utf8.Valid(t)
	}

	route, params, err := s.router.FindRoute(req)
	if err != nil {
		var re *routers.RouteError
		if !errors.As(err, &re) {
			return fmt.Errorf("find route: %w", err)
		}
		want, code := http.StatusNotFound, "resource_not_found"
		if errors.Is(err, routers.ErrMethodNotAllowed) {
			want, code = http.StatusMethodNotAllowed, "request_method_not_allowed"
		}
		if rec.Code != want {
			return fmt.Errorf("the document has no such operation (%v), so want %d, got %d", err, want, rec.Code)
		}
		return s.checkErrorBody(rec, code)
	}

	in := &openapi3filter.RequestValidationInput{
		Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: bearerFormat, SkipSettingDefaults: true},
	}
	reqErr := openapi3filter.ValidateRequest(ctx, in)
	if reqErr != nil && (rec.Code < 400 || rec.Code > 499) {
		return fmt.Errorf("the document refuses this request (%v), yet the server answered %d", reqErr, rec.Code)
	}
	if reqErr == nil && wellFormed {
		if param, refused := refusedAsMalformed(rec); refused && !undocumentable[param] {
			return fmt.Errorf("the document accepts this request, yet the server refused it as malformed (param %q)", param)
		}
	}
	in.Request.Body = io.NopCloser(bytes.NewReader(body))
	return openapi3filter.ValidateResponse(ctx, &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 rec.Code,
		Header:                 rec.Header(),
		Body:                   io.NopCloser(bytes.NewReader(rec.Body.Bytes())),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true},
	})
}

// undocumentable are the parameters with limits the document cannot state
// exactly: the largest expires_in_seconds is configured, and the ids and the
// Idempotency-Key are limited in bytes where JSON Schema counts characters.
var undocumentable = map[string]bool{"expires_in_seconds": true, "user_id": true, "org_id": true, "Idempotency-Key": true,
	"redirect_url": true, "metadata": true, // the allowed redirects are configured; metadata's limit is in bytes
	"actor": true, "session_max_duration_in_seconds": true} // actor's limit is in bytes; the session's largest is configured

// refusedAsMalformed reports whether the answer refuses the request's shape
// (a form_param_* or request_body_invalid error), and which parameter it names.
func refusedAsMalformed(rec *httptest.ResponseRecorder) (param string, refused bool) {
	var body struct {
		Errors []struct {
			Code string            `json:"code"`
			Meta map[string]string `json:"meta"`
		} `json:"errors"`
	}
	if rec.Code != 400 && rec.Code != 422 || json.Unmarshal(rec.Body.Bytes(), &body) != nil || len(body.Errors) == 0 {
		return "", false
	}
	code := body.Errors[0].Code
	return body.Errors[0].Meta["param_name"], code == "request_body_invalid" || strings.HasPrefix(code, "form_param_")
}

// bearerFormat accepts a request whose Authorization header has the form the
// document's bearer scheme asks for; whether the key is known is the
// server's business.
func bearerFormat(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	scheme, key, ok := strings.Cut(in.RequestValidationInput.Request.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || key == "" || strings.ContainsAny(key, " \t") {
		return errors.New("no Authorization: Bearer <secret key> header")
	}
	return nil
}

// checkErrorBody validates an answer to a request no operation describes
// against the Error schema, with the code wanted.
func (s *openapiDoc) checkErrorBody(rec *httptest.ResponseRecorder, code string) error {
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		return fmt.Errorf("Content-Type: got %q, want application/json", ct)
	}
	var v any
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		return fmt.Errorf("error body: %w", err)
	}
	if err := s.doc.Components.Schemas["Error"].Value.VisitJSON(v, openapi3.EnableJSONSchema2020()); err != nil {
		return fmt.Errorf("error body does not match the Error schema: %w", err)
	}
	if got := v.(map[string]any)["errors"].([]any)[0].(map[string]any)["code"]; got != code {
		return fmt.Errorf("error code: got %v, want %s", got, code)
	}
	return nil
}

// TestOpenAPIDocumentServed checks that /openapi.yaml serves the embedded
// document, publicly.
func TestOpenAPIDocumentServed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, path := range []string{"/openapi.yaml", "/openapi.yaml/"} {
		r := b.rawGet(path)
		if r.status != 200 || r.header.Get("Content-Type") != "application/yaml" || !bytes.Equal(r.raw, api.OpenAPI) {
			t.Errorf("GET %s: got %d %q, %d bytes; want 200 application/yaml, the %d bytes of api/openapi.yaml",
				path, r.status, r.header.Get("Content-Type"), len(r.raw), len(api.OpenAPI))
		}
	}
}

// rawGet sends an unauthenticated GET and keeps the body as it is.
func (b *bundle) rawGet(path string) response {
	b.t.Helper()
	resp, err := b.srv.Client().Get(b.srv.URL + path)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, raw: raw}
}

// TestOpenAPIErrorCodes checks that the document's ErrorCode enum is exactly
// the vocabulary: the Code* constants of internal/tokens (the domain's) and of
// internal/http (those only the HTTP layer raises).
func TestOpenAPIErrorCodes(t *testing.T) {
	t.Parallel()
	spec, err := openAPI()
	if err != nil {
		t.Fatal(err)
	}
	var documented []string
	for _, v := range spec.doc.Components.Schemas["ErrorCode"].Value.Enum {
		documented = append(documented, v.(string))
	}
	sort.Strings(documented)

	var codes []string
	for _, file := range []string{"../tokens/errors.go", "errors.go"} {
		f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		n := len(codes)
		ast.Inspect(f, func(n ast.Node) bool {
			if vs, ok := n.(*ast.ValueSpec); ok && len(vs.Names) == 1 && strings.HasPrefix(vs.Names[0].Name, "Code") && len(vs.Values) == 1 {
				if lit, ok := vs.Values[0].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					s, _ := strconv.Unquote(lit.Value)
					codes = append(codes, s)
				}
			}
			return true
		})
		if len(codes) == n {
			t.Errorf("%s: no Code constants found", file)
		}
	}
	sort.Strings(codes)
	if !slices.Equal(documented, codes) {
		t.Errorf("ErrorCode enum:\n got %v\nwant %v (the Code constants of internal/tokens and internal/http)", documented, codes)
	}
}

// TestOpenAPIUnprefixedTwins checks that every /v1 operation has an
// unprefixed twin with the same parameters, body and responses.
func TestOpenAPIUnprefixedTwins(t *testing.T) {
	t.Parallel()
	spec, err := openAPI()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for path, item := range spec.doc.Paths.Map() {
		bare, ok := strings.CutPrefix(path, "/v1")
		if !ok {
			continue
		}
		twin := spec.doc.Paths.Value(bare)
		if twin == nil {
			t.Errorf("%s has no twin %s", path, bare)
			continue
		}
		for method, op := range item.Operations() {
			n++
			other := twin.GetOperation(method)
			if other == nil {
				t.Errorf("%s %s has no twin on %s", method, path, bare)
				continue
			}
			for _, part := range []struct {
				name      string
				got, want any
			}{
				{"parameters", other.Parameters, op.Parameters},
				{"requestBody", other.RequestBody, op.RequestBody},
				{"responses", other.Responses, op.Responses},
				{"security", other.Security, op.Security},
			} {
				got, _ := json.Marshal(part.got)
				want, _ := json.Marshal(part.want)
				if !bytes.Equal(got, want) {
					t.Errorf("%s %s: %s differs from %s's:\n got %s\nwant %s", method, bare, part.name, path, got, want)
				}
			}
		}
		if len(twin.Operations()) != len(item.Operations()) {
			t.Errorf("%s has %d operations, %s %d", bare, len(twin.Operations()), path, len(item.Operations()))
		}
	}
	if n != 12 {
		t.Errorf("/v1 operations: got %d, want 12", n)
	}
}

// TestWebhookPayloadDocumented: the OpenAPI document describes webhook
// deliveries under webhooks, and the body a delivery carries, EventJSON of
// a real event, matches the schema it gives.
func TestWebhookPayloadDocumented(t *testing.T) {
	d, err := openAPI()
	if err != nil {
		t.Fatal(err)
	}
	hook := d.doc.Webhooks["event"]
	if hook == nil || hook.Post == nil || hook.Post.RequestBody == nil {
		t.Fatal("api/openapi.yaml: no webhooks.event.post with a request body")
	}
	for _, h := range []string{"webhook-id", "webhook-timestamp", "webhook-signature"} {
		if p := hook.Post.Parameters.GetByInAndName("header", h); p == nil || !p.Required {
			t.Errorf("webhooks.event: header %s not documented as required", h)
		}
	}
	schema := hook.Post.RequestBody.Value.Content.Get("application/json").Schema.Value
	now := time.UnixMilli(1764316800123).UTC()
	accepted := now.Add(time.Second)
	for _, e := range []tokens.Event{
		{ID: tokens.NewEventID(77, 3), Type: "sign_in_token.accepted", CreatedAt: now,
			Token: tokens.Token{ID: "sit_2pQxAAAAAAAAAAAAAAAAAAAAAAA", UserID: "user_1", Status: tokens.StatusAccepted,
				CreatedAt: now, UpdatedAt: accepted, ExpiresAt: now.Add(time.Hour), AcceptedAt: &accepted, Metadata: []byte(`{"a":1}`)},
			Context: tokens.EventContext{Key: "3f2a9c1d", IP: "203.0.113.7", UserAgent: "ua", TraceID: "t"}},
		{ID: tokens.NewEventID(0, 9), Type: "sign_in_token.redeem_refused", CreatedAt: now, ErrorCode: tokens.CodeAlreadyUsed,
			Token: tokens.Token{ID: "sit_2pQxAAAAAAAAAAAAAAAAAAAAAAB", UserID: "user_1", Status: tokens.StatusAccepted,
				CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(time.Hour), AcceptedAt: &accepted}},
	} {
		body, err := apihttp.EventJSON(e)
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := json.Unmarshal(body, &v); err != nil {
			t.Fatal(err)
		}
		if err := schema.VisitJSON(v, openapi3.EnableJSONSchema2020()); err != nil {
			t.Errorf("%s: the delivered body %s does not match the documented schema: %v", e.Type, body, err)
		}
	}
}
