package wire

import (
	"bytes"
	"errors"
	"fmt"
	"unicode/utf16"
	"unicode/utf8"
)

// keysBeforeMap is how many keys an object may have before objectFields checks
// repeats with a map instead of comparing each key with those before it.
const keysBeforeMap = 16

// objectFields calls fn with each key of the JSON object in line, decoded,
// and its raw value, in order. line must be valid JSON. It refuses a line
// that is not an object, a key that is not valid Unicode and a key that
// appears twice: with repeated keys, decoders disagree on which one counts.
func objectFields(line []byte, fn func(key string, value []byte)) error {
	i := skipSpace(line, 0)
	if i >= len(line) || line[i] != '{' {
		return fmt.Errorf("%w: malformed message: not an object", ErrProtocol)
	}
	var keys []string
	var seen map[string]struct{}
	i = skipSpace(line, i+1)
	for i < len(line) && line[i] != '}' {
		end := stringEnd(line, i)
		key, err := decodeString(line[i:end])
		if err != nil {
			return fmt.Errorf("%w: malformed message: key: %v", ErrProtocol, err)
		}
		if seen == nil && len(keys) == keysBeforeMap {
			seen = make(map[string]struct{}, 2*keysBeforeMap)
			for _, k := range keys {
				seen[k] = struct{}{}
			}
		}
		repeated := false
		if seen != nil {
			_, repeated = seen[key]
			seen[key] = struct{}{}
		} else {
			for _, k := range keys {
				repeated = repeated || k == key
			}
			keys = append(keys, key)
		}
		if repeated {
			return fmt.Errorf("%w: repeated key %q", ErrProtocol, cut(key, 32))
		}
		i = skipSpace(line, end)
		i = skipSpace(line, i+1) // the colon
		vend := valueEnd(line, i)
		fn(key, line[i:vend])
		i = skipSpace(line, vend)
		if i < len(line) && line[i] == ',' {
			i = skipSpace(line, i+1)
		}
	}
	return nil
}

func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index just past the string literal that starts at
// b[i], which is '"'.
func stringEnd(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(b)
}

// valueEnd returns the index just past the JSON value that starts at b[i].
// b is valid JSON, so a value ends at its closing quote or bracket, or, for
// a number or a literal, before the first byte that cannot be part of it.
func valueEnd(b []byte, i int) int {
	if i >= len(b) {
		return i
	}
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = stringEnd(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return i
	}
	for ; i < len(b); i++ {
		switch b[i] {
		case ',', '}', ']', ' ', '\t', '\r', '\n':
			return i
		}
	}
	return i
}

var (
	errNotString  = errors.New("not a string")
	errInvalidUTF = errors.New("not valid UTF-8")
	errSurrogate  = errors.New("a lone surrogate (\\ud800-\\udfff) has no character")
)

// decodeString decodes a JSON string literal exactly: raw invalid UTF-8 and
// \u escapes of lone surrogates, which encoding/json would both turn into
// U+FFFD, are errors, so that every string it returns encodes back to the
// same characters and two different literals never decode to one string
// unless JSON says they are equal. raw must be valid JSON.
func decodeString(raw []byte) (string, error) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", errNotString
	}
	s := raw[1 : len(raw)-1]
	if !utf8.Valid(s) {
		return "", errInvalidUTF
	}
	if bytes.IndexByte(s, '\\') < 0 {
		return string(s), nil
	}
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); {
		if s[i] != '\\' {
			out = append(out, s[i])
			i++
			continue
		}
		switch c := s[i+1]; c {
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r := hex4(s[i+2:])
			i += 6
			if utf16.IsSurrogate(r) {
				if r >= 0xDC00 || i+6 > len(s) || s[i] != '\\' || s[i+1] != 'u' {
					return "", errSurrogate
				}
				r = utf16.DecodeRune(r, hex4(s[i+2:]))
				if r == utf8.RuneError {
					return "", errSurrogate
				}
				i += 6
			}
			out = utf8.AppendRune(out, r)
			continue
		default: // '"', '\\', '/'
			out = append(out, c)
		}
		i += 2
	}
	return string(out), nil
}

// hex4 decodes the four hexadecimal digits at the start of b, which valid
// JSON guarantees are there.
func hex4(b []byte) rune {
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		default:
			c -= 'A' - 10
		}
		r = r<<4 | rune(c)
	}
	return r
}
