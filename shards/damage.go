package shards

import (
	"errors"
	"fmt"
)

// Damage reasons: why a shard stopped being readable part-way. They are the values of
// ShardDamage.Reason, so renaming one breaks dashboards over old stats.json files.
const (
	DamageTruncated = "truncated"  // the shard ends inside a member or a header, or without its end-of-archive marker
	DamageBadHeader = "bad_header" // a member header that is not a valid tar header (checksum, fields, a PAX record such as a name holding NUL)
	DamageBadGzip   = "bad_gzip"   // the gzip stream around the tar is corrupt (deflate data, checksum)
)

// ErrInterrupted marks a read that the store could not finish (an S3 body cut mid-stream
// and not resumable, a connection reset): an outage, which may succeed when retried, and
// never a sign that the shard itself is damaged. Errors wrap it and the store's cause.
var ErrInterrupted = errors.New("read interrupted")

// ShardDamage says where and why a shard damaged part-way stopped being readable. It is
// ShardStats.Damage, so stats.json and the manifest can name it.
type ShardDamage struct {
	// TruncatedAt is how many bytes of the tar stream (after gunzip, for a .tar.gz) had
	// been read when the damage was found.
	TruncatedAt int64 `json:"truncated_at"`
	// Member is the member being read when the shard broke; empty when it broke between
	// members (in a header, or at the end).
	Member string `json:"member,omitempty"`
	// After is the last member read whole before the damage.
	After  string `json:"after_member,omitempty"`
	Reason string `json:"reason"` // DamageTruncated, DamageBadHeader or DamageBadGzip
	Detail string `json:"detail"` // what the decoder said
}

// DamageError ends a shard that was damaged part-way: every sample before it was returned
// as usual (the one the damage cut into with SkipTruncatedMember), none comes after. The
// shard is done with damage, not failed: count what was read, record Damage in its stats,
// and publish. A caller that does not look for it treats it as any other error, so a
// damaged shard is never taken for a whole one.
type DamageError struct {
	Shard string
	ShardDamage
	Err error // the decoder's error
}

func (e *DamageError) Error() string {
	where := "at the start"
	switch {
	case e.Member != "":
		where = fmt.Sprintf("in member %q", e.Member)
	case e.After != "":
		where = fmt.Sprintf("after member %q", e.After)
	}
	return fmt.Sprintf("tar shard %s: damaged (%s) %s, %d bytes into the shard: %v", e.Shard, e.Reason, where, e.TruncatedAt, e.Err)
}

func (e *DamageError) Unwrap() error { return e.Err }

// Damage is what stats record of the error.
func (e *DamageError) Damage() *ShardDamage {
	d := e.ShardDamage
	return &d
}
