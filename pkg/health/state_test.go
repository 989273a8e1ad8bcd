package health

import "testing"

// TestMachine runs result sequences through the pure state machine.
// results: '+' success, '-' failure. want: status after each result,
// 'u' unknown, 'U' up, 'D' down.
func TestMachine(t *testing.T) {
	tests := []struct {
		name       string
		rise, fall int
		results    string
		want       string
	}{
		{"unknown: first success confirms up", 2, 2, "+", "U"},
		{"unknown: fall failures go down", 2, 2, "--", "uD"},
		{"unknown: one failure then success", 2, 2, "-+", "uU"},
		{"unknown: failures must be consecutive", 2, 3, "--+--+--", "uuUUUUUU"},
		{"up: fall failures go down", 2, 2, "+--", "UUD"},
		{"up: alternating never goes down (not cumulative)", 2, 2, "+-+-+-+-+-", "UUUUUUUUUU"},
		{"down: rise successes come back", 2, 2, "--++", "uDDU"},
		{"down: interrupted rise starts over", 2, 2, "--+-+-++", "uDDDDDDU"},
		{"down: alternating never comes up", 3, 2, "--+-+-+-", "uDDDDDDD"},
		{"rise 1 fall 1 follows every result", 1, 1, "+-+--++", "UDUDDUU"},
		{"rise 3 fall 3", 3, 3, "---++-+++--", "uuDDDDDDUUU"},
		{"flap back down after recovering", 2, 2, "--++--", "uDDUUD"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m machine
			got := make([]byte, 0, len(tt.results))
			for i, r := range tt.results {
				before := m.status
				from, changed := m.observe(r == '+', tt.rise, tt.fall)
				if from != before || changed != (m.status != before) {
					t.Fatalf("step %d: observe returned (%v, %v), status %v → %v", i, from, changed, before, m.status)
				}
				got = append(got, "uUD"[m.status])
			}
			if string(got) != tt.want {
				t.Errorf("results %s (rise %d, fall %d): statuses %s, want %s", tt.results, tt.rise, tt.fall, got, tt.want)
			}
		})
	}
}

func TestMachineConsecutive(t *testing.T) {
	var m machine
	for i, r := range "++-+---" {
		m.observe(r == '+', 2, 2)
		want := []int{1, 2, 1, 1, 1, 2, 3}[i]
		if got := m.consecutive(); got != want {
			t.Fatalf("after %d results: consecutive %d, want %d", i+1, got, want)
		}
	}
}

func TestStatusUp(t *testing.T) {
	for s, want := range map[Status]bool{StatusUnknown: true, StatusUp: true, StatusDown: false} {
		if s.Up() != want {
			t.Errorf("%v.Up() = %v, want %v", s, s.Up(), want)
		}
	}
}
