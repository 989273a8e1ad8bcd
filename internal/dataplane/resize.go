// resize.go: flow tables whose size changed across a restart, and how full they are.

package dataplane

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// A pinned map cannot change size. When a restart asks for another size, the old table is
// moved aside (its pin renamed NAME_aside, so a run that dies half-way leaves it for the
// next), the load creates and pins a table of the new size, and the entries are copied
// twice: before the new program takes the link (the bulk, overwriting nothing there is), and
// after (what the old program recorded meanwhile, never overwriting what the new one wrote).
// Then the old table's pin goes.
const oldPinSuffix = "_aside" // bpffs refuses names with a dot

type resizing struct {
	dir    string
	tables []table
	old    map[string]*ebpf.Map // by map name
}

// table is a resizable table: its map name and how to copy its entries.
type table struct {
	name string
	copy func(from, to *ebpf.Map, noExist bool) (int, error)
}

func tableOf[K comparable, V any](name string) table {
	return table{name: name, copy: copyEntries[K, V]}
}

// sizeTables sets the named maps' size in spec (0 keeps the compiled default) and, where
// dir holds a pinned one of another size (or one a run left aside), moves it aside.
func sizeTables(spec *ebpf.CollectionSpec, dir string, tables []table, size uint32, log func(string, ...any)) (*resizing, error) {
	r := &resizing{dir: dir, tables: tables, old: map[string]*ebpf.Map{}}
	for _, t := range tables {
		name := t.name
		ms, ok := spec.Maps[name]
		if !ok {
			return nil, fmt.Errorf("no map %q in the spec", name)
		}
		if size != 0 {
			ms.MaxEntries = size
		}
		if dir == "" {
			continue
		}
		path := filepath.Join(dir, name)
		if m, err := ebpf.LoadPinnedMap(path+oldPinSuffix, nil); err == nil {
			log("flow table left aside by an earlier run: its entries will be copied", "map", name, "entries", m.MaxEntries())
			r.old[name] = m
		}
		m, err := ebpf.LoadPinnedMap(path, nil)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			r.close()
			return nil, fmt.Errorf("open pinned %s: %w", path, err)
		}
		if m.MaxEntries() == ms.MaxEntries {
			m.Close()
			continue
		}
		if prev := r.old[name]; prev != nil {
			// both a table left aside and a pinned one of another size: the pinned one is
			// the newer; the older one's flows are past saving
			prev.Close()
			if err := os.Remove(path + oldPinSuffix); err != nil {
				m.Close()
				r.close()
				return nil, err
			}
		}
		if err := os.Rename(path, path+oldPinSuffix); err != nil {
			m.Close()
			r.close()
			return nil, fmt.Errorf("move %s aside: %w", path, err)
		}
		log("flow table resized: its entries are copied into the new one", "map", name, "from", m.MaxEntries(), "to", ms.MaxEntries)
		r.old[name] = m
	}
	return r, nil
}

// copyInto copies every old table's entries into the new table of the same name (maps, by
// map name); with noExist, an entry the new table has already is kept.
func (r *resizing) copyInto(maps map[string]*ebpf.Map, noExist bool) (int, error) {
	n := 0
	for _, t := range r.tables {
		old, ok := r.old[t.name]
		if !ok {
			continue
		}
		to, ok := maps[t.name]
		if !ok {
			return n, fmt.Errorf("no new table %s", t.name)
		}
		c, err := t.copy(old, to, noExist)
		n += c
		if err != nil {
			return n, fmt.Errorf("copy %s: %w", t.name, err)
		}
	}
	return n, nil
}

// finish makes the last copy and removes the old tables.
func (r *resizing) finish(maps map[string]*ebpf.Map) (int, error) {
	n, err := r.copyInto(maps, true)
	if err != nil {
		return n, err
	}
	var errs []error
	for name := range r.old {
		if err := os.Remove(filepath.Join(r.dir, name+oldPinSuffix)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	r.close()
	return n, errors.Join(errs...)
}

func (r *resizing) close() {
	for name, m := range r.old {
		m.Close()
		delete(r.old, name)
	}
}

// copyEntries copies from's entries (keys K, values V) into to, spreading the inserts over
// every CPU: with BPF_F_NO_COMMON_LRU each CPU evicts from its own share of an LRU table, so
// one CPU's inserts could keep only its share of them.
func copyEntries[K comparable, V any](from, to *ebpf.Map, noExist bool) (int, error) {
	const chunk = 4096
	type batch struct {
		keys []K
		vals []V
	}
	work := make(chan batch)
	var wg sync.WaitGroup
	var mu sync.Mutex
	copied := 0
	var firstErr error
	for cpu := range runtime.NumCPU() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			var set unix.CPUSet
			set.Set(cpu)
			_ = unix.SchedSetaffinity(0, &set) // best effort: an offline CPU's worker runs anywhere
			for b := range work {
				c, err := putAll(to, b.keys, b.vals, noExist)
				mu.Lock()
				copied += c
				if err != nil && firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		}()
	}
	var cursor ebpf.MapBatchCursor
	var lookupErr error
	for {
		keys, vals := make([]K, chunk), make([]V, chunk)
		n, err := from.BatchLookup(&cursor, keys, vals, nil)
		if n > 0 {
			work <- batch{keys[:n], vals[:n]}
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			break
		}
		if err != nil {
			lookupErr = err
			break
		}
	}
	close(work)
	wg.Wait()
	return copied, errors.Join(lookupErr, firstErr)
}

// putAll writes keys and values into m: one by one with noExist (an entry that is there
// already stays), else in one batch.
func putAll[K comparable, V any](m *ebpf.Map, keys []K, vals []V, noExist bool) (int, error) {
	if !noExist {
		return m.BatchUpdate(keys, vals, nil)
	}
	done := 0
	for i := range keys {
		if err := m.Update(keys[i], vals[i], ebpf.UpdateNoExist); err != nil && !errors.Is(err, ebpf.ErrKeyExist) {
			return done, err
		}
		done++
	}
	return done, nil
}

// countEntries is how many entries m (keys K, values V) holds, read in batches.
func countEntries[K comparable, V any](m *ebpf.Map) (int, error) {
	const chunk = 4096
	keys, vals := make([]K, chunk), make([]V, chunk)
	var cursor ebpf.MapBatchCursor
	total := 0
	for {
		n, err := m.BatchLookup(&cursor, keys, vals, nil)
		total += n
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// TableFill is how full a table is.
type TableFill struct {
	Entries int `json:"entries"`
	Size    int `json:"size"`
}
