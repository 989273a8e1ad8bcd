package config

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// decoder walks a yaml.Node tree, collecting positioned errors and warnings.
type decoder struct {
	file  string
	errs  []*Error
	warns []*Error
}

func (d *decoder) pos(n *yaml.Node) Position {
	return Position{File: d.file, Line: n.Line, Column: n.Column}
}

func (d *decoder) errorf(n *yaml.Node, path, format string, args ...any) {
	d.errs = append(d.errs, &Error{Pos: d.pos(n), Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (d *decoder) warnf(n *yaml.Node, path, format string, args ...any) {
	d.warns = append(d.warns, &Error{Pos: d.pos(n), Path: path, Msg: fmt.Sprintf(format, args...)})
}

// err returns the collected errors in file order, capped at maxErrors, or nil.
func (d *decoder) err() error {
	if len(d.errs) == 0 {
		return nil
	}
	sortByPos(d.errs)
	var errs []error
	for i, e := range d.errs {
		if i == maxErrors {
			errs = append(errs, &Error{Pos: Position{File: d.file},
				Msg: fmt.Sprintf("%d more errors not shown", len(d.errs)-maxErrors)})
			break
		}
		errs = append(errs, e)
	}
	return errors.Join(errs...)
}

func sortByPos(es []*Error) {
	slices.SortStableFunc(es, func(a, b *Error) int {
		if a.Pos.Line != b.Pos.Line {
			return a.Pos.Line - b.Pos.Line
		}
		return a.Pos.Column - b.Pos.Column
	})
}

// resolve follows aliases to the anchored node.
func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	n = resolve(n)
	return n == nil || n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "an empty value"
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "nothing"
}

// join makes a child field path.
func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// fields is a YAML mapping checked against a list of allowed keys.
type fields struct {
	d    *decoder
	node *yaml.Node // where problems with the mapping as a whole are reported: its key, or itself
	path string
	m    map[string]field
}

type field struct{ key, val *yaml.Node }

// mapping checks that n is a mapping whose keys are all in allowed and appear once. Merge keys
// (<<) are honoured; keys written explicitly win over merged ones. It returns nil, with an
// error recorded, when n is not a mapping.
func (d *decoder) mapping(n *yaml.Node, path string, allowed ...string) *fields {
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "expected a mapping, got %s", kindName(n))
		return nil
	}
	f := &fields{d: d, node: n, path: path, m: map[string]field{}}
	var merged []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.errorf(k, path, "expected a field name, got %s", kindName(k))
			continue
		}
		if k.Value == "<<" && k.Tag == "!!merge" {
			merged = append(merged, v)
			continue
		}
		if prev, ok := f.m[k.Value]; ok {
			d.errorf(k, join(path, k.Value), "field appears twice (first at %s)", d.pos(prev.key))
			continue
		}
		if !slices.Contains(allowed, k.Value) {
			d.unknown(k, path, allowed)
			continue
		}
		f.m[k.Value] = field{k, v}
	}
	for _, v := range merged {
		v = resolve(v)
		srcs := []*yaml.Node{v}
		if v.Kind == yaml.SequenceNode {
			srcs = v.Content
		}
		for _, src := range srcs {
			src = resolve(src)
			if src.Kind != yaml.MappingNode {
				d.errorf(src, path, "a merge (<<) needs a mapping or a list of mappings, got %s", kindName(src))
				continue
			}
			for i := 0; i+1 < len(src.Content); i += 2 {
				k, v := src.Content[i], src.Content[i+1]
				if _, ok := f.m[k.Value]; ok || k.Kind != yaml.ScalarNode {
					continue
				}
				if !slices.Contains(allowed, k.Value) {
					d.unknown(k, path, allowed)
					continue
				}
				f.m[k.Value] = field{k, v}
			}
		}
	}
	return f
}

func (d *decoder) unknown(k *yaml.Node, path string, allowed []string) {
	hint := ""
	if s := closest(k.Value, allowed); s != "" {
		hint = fmt.Sprintf(" (did you mean %q?)", s)
	}
	d.errorf(k, join(path, k.Value), "unknown field%s; allowed: %s", hint, strings.Join(allowed, ", "))
}

// closest returns the allowed name within edit distance 2 of s, if there is one.
func closest(s string, allowed []string) string {
	best, bestD := "", 3
	for _, a := range allowed {
		if dist := editDistance(s, a); dist < bestD {
			best, bestD = a, dist
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// sub checks the value of field name as a mapping, like decoder.mapping; problems with the
// mapping as a whole (a missing field) are reported at name's key. It returns nil when the
// field is absent or not a mapping.
func (f *fields) sub(name string, allowed ...string) *fields {
	n, ok := f.get(name)
	if !ok {
		return nil
	}
	s := f.d.mapping(n, join(f.path, name), allowed...)
	if s != nil {
		s.node = f.m[name].key
	}
	return s
}

// get returns the value of a field that is present and not null.
func (f *fields) get(name string) (*yaml.Node, bool) {
	if f == nil {
		return nil, false
	}
	e, ok := f.m[name]
	if !ok || isNull(e.val) {
		return nil, false
	}
	return resolve(e.val), true
}

func (f *fields) has(name string) bool {
	_, ok := f.get(name)
	return ok
}

// missing records that a required field is absent, at the field's key when it is written
// with no value, else at the start of the enclosing mapping.
func (f *fields) missing(name string) {
	at := f.node
	if e, ok := f.m[name]; ok {
		at = e.key
	}
	f.d.errorf(at, join(f.path, name), "required field is missing")
}

// scalar returns the text of a scalar field; ok is false when it is absent or not a scalar.
func (f *fields) scalar(name string) (n *yaml.Node, s string, ok bool) {
	n, ok = f.get(name)
	if !ok {
		return nil, "", false
	}
	if n.Kind != yaml.ScalarNode {
		f.d.errorf(n, join(f.path, name), "expected a single value, got %s", kindName(n))
		return nil, "", false
	}
	return n, n.Value, true
}

// str sets *dst from a string field when present.
func (f *fields) str(name string, dst *string) bool {
	_, s, ok := f.scalar(name)
	if ok {
		*dst = s
	}
	return ok
}

// oneOf sets *dst from a field whose value must be one of choices: an enum of the package
// that owns it (cluster.Quorum, consistenthash.Algorithm, …) or plain strings.
func oneOf[T ~string](f *fields, name string, dst *T, choices ...T) bool {
	n, s, ok := f.scalar(name)
	if !ok {
		return false
	}
	if !slices.Contains(choices, T(s)) {
		names := make([]string, len(choices))
		for i, c := range choices {
			names[i] = string(c)
		}
		f.d.errorf(n, join(f.path, name), "%q is not one of %s", s, strings.Join(names, ", "))
		return false
	}
	*dst = T(s)
	return true
}

// uint parses a decimal integer field in [lo, hi].
func (f *fields) uint(name string, lo, hi uint64) (uint64, bool) {
	n, s, ok := f.scalar(name)
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseUint(s, 10, 64)
	switch {
	case err != nil && !integerRE.MatchString(s):
		f.d.errorf(n, join(f.path, name), "%q is not an integer", s)
		return 0, false
	case err != nil || v < lo || v > hi:
		f.d.errorf(n, join(f.path, name), "%s is out of range (%d..%d)", s, lo, hi)
		return 0, false
	}
	return v, true
}

var integerRE = regexp.MustCompile(`^[-+]?[0-9]+$`)

func (f *fields) port(name string, lo uint64, dst *uint16) bool {
	v, ok := f.uint(name, lo, 65535)
	if ok {
		*dst = uint16(v)
	}
	return ok
}

func (f *fields) int(name string, lo, hi int, dst *int) bool {
	v, ok := f.uint(name, uint64(lo), uint64(hi))
	if ok {
		*dst = int(v)
	}
	return ok
}

func (f *fields) bool(name string, dst *bool) bool {
	n, s, ok := f.scalar(name)
	if !ok {
		return false
	}
	switch strings.ToLower(s) {
	case "true":
		*dst = true
	case "false":
		*dst = false
	default:
		f.d.errorf(n, join(f.path, name), "%q is not a boolean (true or false)", s)
		return false
	}
	return true
}

func (f *fields) duration(name string, lo time.Duration, dst *time.Duration) bool {
	n, s, ok := f.scalar(name)
	if !ok {
		return false
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		f.d.errorf(n, join(f.path, name), "%q is not a duration (e.g. 500ms, 1s, 1m30s)", s)
		return false
	}
	if v < lo {
		f.d.errorf(n, join(f.path, name), "%s is too short (minimum %s)", s, lo)
		return false
	}
	*dst = v
	return true
}

// addr parses an IP address field. Zones, IPv4-mapped IPv6 addresses and addresses that cannot
// be a host's (unspecified, loopback, multicast) are refused.
func (f *fields) addr(name string) (netip.Addr, *yaml.Node, bool) {
	n, s, ok := f.scalar(name)
	if !ok {
		return netip.Addr{}, nil, false
	}
	path := join(f.path, name)
	a, err := netip.ParseAddr(s)
	switch {
	case err != nil:
		f.d.errorf(n, path, "%q is not an IP address", s)
	case a.Zone() != "":
		f.d.errorf(n, path, "%q: an IPv6 zone is not allowed here", s)
	case a.Is4In6():
		f.d.errorf(n, path, "%s is an IPv4-mapped IPv6 address: write %s", s, a.Unmap())
	case a.IsUnspecified() || a.IsLoopback() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		f.d.errorf(n, path, "%s is not a unicast host address", s)
	default:
		return a, n, true
	}
	return netip.Addr{}, nil, false
}

// list returns the items of a list field.
func (f *fields) list(name string) ([]*yaml.Node, bool) {
	n, ok := f.get(name)
	if !ok {
		return nil, false
	}
	if n.Kind != yaml.SequenceNode {
		f.d.errorf(n, join(f.path, name), "expected a list, got %s", kindName(n))
		return nil, false
	}
	return n.Content, true
}
