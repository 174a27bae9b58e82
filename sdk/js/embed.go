// Package sdkjs holds the JavaScript SDK's source for the server to serve
// at /sdk/bandsync.js: the same file npm publishes, embedded from here
// because go:embed cannot reach outside a package's folder. package.json's
// "files" list keeps this Go file out of the npm package.
package sdkjs

import _ "embed"

// Source is bandsync.js as published.
//
//go:embed bandsync.js
var Source []byte
