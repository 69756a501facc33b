// Package api holds the OpenAPI document of the HTTP API, built into the
// binary so the server can serve it at /openapi.yaml.
package api

import _ "embed"

// OpenAPI is the OpenAPI 3.1 document, YAML.
//
//go:embed openapi.yaml
var OpenAPI []byte
