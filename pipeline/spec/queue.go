package spec

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Queue is how a run's jobs are delivered and retried.
type Queue struct {
	// AckWait is how long a job may go without a heartbeat before JetStream gives it to
	// another worker (workers send one every AckWait/4 while they work).
	AckWait time.Duration
	// MaxDeliver is how many attempts a shard gets before it is dead.
	MaxDeliver int
	// Backoff is the wait before attempt n+1 after attempt n failed (the last repeats).
	Backoff Backoff
}

// Queue defaults: they suit shards that take minutes.
const (
	DefaultAckWait    = 60 * time.Second
	DefaultMaxDeliver = 5
)

// DefaultBackoff spaces the attempts of a failing shard.
func DefaultBackoff() Backoff {
	return Backoff{5 * time.Second, 30 * time.Second, 2 * time.Minute, 5 * time.Minute}
}

// DefaultQueue is the queue settings of a run that sets none.
func DefaultQueue() Queue {
	return Queue{AckWait: DefaultAckWait, MaxDeliver: DefaultMaxDeliver, Backoff: DefaultBackoff()}
}

// MinAckWait keeps heartbeats (every AckWait/4) from flooding the server.
const MinAckWait = time.Second

// WithDefaults fills the zero fields (settings recorded before a field existed).
func (q Queue) WithDefaults() Queue {
	d := DefaultQueue()
	if q.AckWait == 0 {
		q.AckWait = d.AckWait
	}
	if q.MaxDeliver == 0 {
		q.MaxDeliver = d.MaxDeliver
	}
	if len(q.Backoff) == 0 {
		q.Backoff = d.Backoff
	}
	return q
}

// Validate names every setting out of range (a Problems error), nil when there is none.
func (q Queue) Validate() error {
	var ps Problems
	if q.AckWait < MinAckWait {
		ps.add("ack-wait", q.AckWait.String(), "must be at least "+MinAckWait.String())
	}
	if q.MaxDeliver < 1 {
		ps.add("max-deliver", strconv.Itoa(q.MaxDeliver), "must be at least 1")
	}
	if len(q.Backoff) == 0 {
		ps.add("retry-backoff", `""`, "want at least one wait, e.g. 5s,30s,2m")
	}
	for _, d := range q.Backoff {
		if d <= 0 {
			ps.add("retry-backoff", strconv.Quote(q.Backoff.String()), "every wait must be > 0")
			break
		}
	}
	return ps.err()
}

// BackoffAfter is the wait before redelivering a job whose attempt-th delivery failed.
func (q Queue) BackoffAfter(attempt int) time.Duration {
	if len(q.Backoff) == 0 {
		return 0
	}
	return q.Backoff[min(max(attempt-1, 0), len(q.Backoff)-1)]
}

type queueJSON struct {
	AckWait    string  `json:"ack_wait"`
	MaxDeliver int     `json:"max_deliver"`
	Backoff    Backoff `json:"backoff"`
}

// MarshalJSON writes durations as Go duration strings ("1m0s"), not nanoseconds.
func (q Queue) MarshalJSON() ([]byte, error) {
	return json.Marshal(queueJSON{AckWait: q.AckWait.String(), MaxDeliver: q.MaxDeliver, Backoff: q.Backoff})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (q *Queue) UnmarshalJSON(b []byte) error {
	var j queueJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	out := Queue{MaxDeliver: j.MaxDeliver, Backoff: j.Backoff}
	if j.AckWait != "" {
		d, err := time.ParseDuration(j.AckWait)
		if err != nil {
			return fmt.Errorf("ack_wait %q: %w", j.AckWait, err)
		}
		out.AckWait = d
	}
	*q = out
	return nil
}

// Backoff is a list of waits; its text form is "5s,30s,2m0s".
type Backoff []time.Duration

func (b Backoff) String() string {
	s := make([]string, len(b))
	for i, d := range b {
		s[i] = d.String()
	}
	return strings.Join(s, ",")
}

// ParseBackoff reads waits separated by commas ("5s,30s,2m").
func ParseBackoff(s string) (Backoff, error) {
	var out Backoff
	for _, f := range strings.Split(s, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("%q: want durations like 5s,30s,2m", s)
		}
		out = append(out, d)
	}
	return out, nil
}

// MarshalText writes the text form.
func (b Backoff) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

// UnmarshalText reads the text form; empty is no waits.
func (b *Backoff) UnmarshalText(t []byte) error {
	if len(t) == 0 {
		*b = nil
		return nil
	}
	v, err := ParseBackoff(string(t))
	if err != nil {
		return err
	}
	*b = v
	return nil
}

func (q Queue) String() string {
	return fmt.Sprintf("ack wait %v, %d attempts, backoff %v", q.AckWait, q.MaxDeliver, q.Backoff)
}
