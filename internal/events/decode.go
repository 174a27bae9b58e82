package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/bandsync/bandsync/internal/engine"
	"github.com/bandsync/bandsync/internal/protocol"
)

// maxEventPayload bounds one event's argument. Every BandSync event is a
// small object (the largest, a 500-character message, is under 3 KB
// escaped); anything far past that is refused before decoding.
const maxEventPayload = 16 << 10

// decode unmarshals an event's payload into dst, turning every way a
// client can get it wrong into an INVALID_PAYLOAD (or PAYLOAD_TOO_LARGE)
// error that says what was expected.
func decode(event string, data json.RawMessage, dst any) error {
	return decodeLimit(event, data, dst, maxEventPayload)
}

// decodeLimit is decode with its own bound on the payload's size, for the
// events that carry a chart.
func decodeLimit(event string, data json.RawMessage, dst any, limit int) error {
	if len(data) > limit {
		return &engine.Error{Code: protocol.CodePayloadTooLarge, Message: fmt.Sprintf("%s payload is %d bytes; at most %d allowed", event, len(data), limit)}
	}
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' {
		what := "nothing"
		if len(data) > 0 {
			what = jsonKind(data)
		}
		return invalid("%s expects an object payload, got %s", event, what)
	}
	if err := json.Unmarshal(data, dst); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			field := te.Field
			if field == "" {
				field = "payload"
			}
			return invalid("%s: %s must be a %s, got %s", event, field, jsonTypeName(te.Type.String()), te.Value)
		}
		return invalid("%s: malformed payload", event)
	}
	return nil
}

func invalid(format string, args ...any) error {
	return &engine.Error{Code: protocol.CodeInvalidPayload, Message: fmt.Sprintf(format, args...)}
}

func jsonKind(data []byte) string {
	switch data[0] {
	case '[':
		return "array"
	case '"':
		return "string"
	case 'n':
		return "null"
	case 't', 'f':
		return "boolean"
	default:
		return "number"
	}
}

func jsonTypeName(goType string) string {
	goType = strings.TrimPrefix(goType, "*")
	switch goType {
	case "float64", "float32", "int", "int64":
		return "number"
	case "string":
		return "string"
	case "bool":
		return "boolean"
	}
	return goType
}

// required reports a missing field.
func required(event, field string) error {
	return invalid("%s: %s is required", event, field)
}
