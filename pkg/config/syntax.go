package config

// YAML syntax errors, placed as exactly as yaml.v3's messages allow.

import (
	"bytes"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// yaml.v3 reports syntax errors as "yaml: line N: message", with N the line where the construct
// being parsed starts (for parser errors one less: it prints a 0-based mark) or else of the
// problem itself, and leaves "line N" out when that is the first line. It never gives a column.
var (
	yamlLineRE   = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
	yamlAnchorRE = regexp.MustCompile(`^yaml: unknown anchor '(.*)' referenced$`)
)

// parserProblems are the messages yaml.v3 reports from its parser rather than its scanner.
var parserProblems = []string{
	"did not find expected <document start>",
	"did not find expected key",
	"did not find expected '-' indicator",
	"did not find expected ',' or ']'",
	"did not find expected ',' or '}'",
	"did not find expected node content",
}

// syntaxError turns a yaml.v3 syntax error into an *Error with the best position we can get.
func syntaxError(file string, data []byte, err error) error {
	msg := err.Error()
	pos := Position{File: file}
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		pos.Line, _ = strconv.Atoi(m[1])
		msg = m[2]
		if slices.Contains(parserProblems, msg) {
			pos.Line++
		}
	} else if m := yamlAnchorRE.FindStringSubmatch(msg); m != nil {
		msg = strings.TrimPrefix(msg, "yaml: ")
		pos.Line, pos.Column = find(data, "*"+m[1])
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
		if l, c := badByte(data); l > 0 {
			pos.Line, pos.Column = l, c
		} else if slices.Contains(parserProblems, msg) || strings.HasPrefix(msg, "mapping values") ||
			strings.HasPrefix(msg, "found ") || strings.HasPrefix(msg, "could not find") {
			// yaml.v3 leaves out "line N" when the mark is on the first line.
			pos.Line = 1
		}
	}
	if pos.Line > 0 && pos.Column == 0 {
		pos.Line = refineLine(data, pos.Line, msg)
	}
	return &Error{Pos: pos, Msg: "yaml: " + msg}
}

// problem returns a yaml.v3 syntax error's message without "yaml: line N: ".
func problem(err error) string {
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		return m[2]
	}
	return strings.TrimPrefix(msg, "yaml: ")
}

// refineLine narrows a syntax error down from the line yaml.v3 names, which is often where the
// enclosing block or flow collection starts, to the first line at which the file's first lines
// alone fail with the same problem. The search is a bisection: a few parses of prefixes.
func refineLine(data []byte, from int, msg string) int {
	lines := bytes.SplitAfter(data, []byte("\n"))
	fails := func(k int) bool {
		var n yaml.Node
		err := yaml.Unmarshal(bytes.Join(lines[:k], nil), &n)
		return err != nil && problem(err) == msg
	}
	lo, hi := from, len(lines)
	if lo > hi || !fails(hi) {
		return from
	}
	for lo < hi {
		if mid := (lo + hi) / 2; fails(mid) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// find returns the 1-based line and column of the first occurrence of s in data, or 0, 0.
func find(data []byte, s string) (line, col int) {
	i := strings.Index(string(data), s)
	if i < 0 {
		return 0, 0
	}
	return lineCol(data, i)
}

func lineCol(data []byte, off int) (line, col int) {
	before := string(data[:off])
	line = strings.Count(before, "\n") + 1
	col = len([]rune(before[strings.LastIndexByte(before, '\n')+1:])) + 1
	return line, col
}

// badByte finds the first byte YAML's reader refuses (invalid UTF-8 or a control character).
func badByte(data []byte) (line, col int) {
	s := string(data)
	for i, r := range s {
		switch {
		case r == '\t' || r == '\n' || r == '\r' || r == 0xFEFF:
		case r == 0xFFFD && !strings.HasPrefix(s[i:], "\uFFFD"), r < 0x20, r == 0x7F,
			r >= 0x80 && r < 0xA0 && r != 0x85:
			return lineCol(data, i)
		}
	}
	return 0, 0
}
