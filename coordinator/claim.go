package coordinator

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/capfilt/capfilt/pipeline"
	"github.com/capfilt/capfilt/shards"
)

// ClaimName is the object under an output prefix that says which run it belongs to.
const ClaimName = "_capfilt_run.json"

// Claim is OUT/_capfilt_run.json. Submit writes it create-only before it publishes
// anything, so of two runs submitted into one prefix only one gets it, and a second run
// into a prefix is refused instead of silently replacing the first one's files.
type Claim struct {
	Run string `json:"run"`
	// Token tells this claim from another by a run of the same name: a submit reads the
	// claim back and finds its own token, or lost a race.
	Token     string    `json:"token"`
	ClaimedAt time.Time `json:"claimed_at"`
	Version   string    `json:"version,omitempty"`
	// Settings are the claiming run's: a run of the same name with the same inputs,
	// models and rule resumes into the prefix (a rerun of `capfilt run` on a new
	// embedded server, say); with other ones it is another run.
	Settings pipeline.RunSettings `json:"settings"`
}

// maxNamed bounds how many foreign files a refusal names.
const maxNamed = 5

// claimOutput makes rs's output prefix rs's: it is already (the same run resuming), or it
// is empty and the claim is written create-only now. A prefix claimed by another run, or
// holding files without a claim (another tool's, an img2dataset folder), is refused
// unless overwrite, which takes it over: the run's outputs replace files of the same
// name, other files are left where they are.
func (c *Coordinator) claimOutput(ctx context.Context, rs pipeline.RunSettings, overwrite bool) error {
	out := rs.Output
	for range 3 {
		prev, err := c.readClaim(ctx, out)
		switch {
		case err == nil:
			if reason := sameRun(prev, rs); reason == "" {
				return nil
			} else if !overwrite {
				return invalidf("output %s %s: choose another output, or overwrite it (--overwrite)", out, reason)
			}
		case errors.Is(err, shards.ErrNotFound):
			if !overwrite {
				if err := c.checkEmpty(ctx, rs); err != nil {
					return err
				}
			}
		case overwrite:
			// An unreadable claim is replaced like any other.
		default:
			return err
		}
		claim := Claim{Run: rs.Run, Token: newToken(), ClaimedAt: time.Now().UTC(), Version: c.version, Settings: rs}
		data, err := json.MarshalIndent(claim, "", "  ")
		if err != nil {
			return fmt.Errorf("encode the claim of run %s: %w", rs.Run, err)
		}
		data = append(data, '\n')
		u := out.Join(ClaimName)
		if overwrite {
			err = c.writeObject(ctx, u, data)
		} else {
			err = c.store.CreateExclusive(ctx, u, data)
		}
		if errors.Is(err, shards.ErrExists) {
			continue // another submit claimed it first: see whose it is
		}
		if err != nil {
			return invalidf("output %s cannot be claimed: %v", out, err)
		}
		// A store that ignores conditional writes lets a racer overwrite the claim
		// unnoticed; reading it back catches every racer that wrote before this read.
		got, err := c.readClaim(ctx, out)
		if err != nil {
			return fmt.Errorf("output %s: read the claim back: %w", out, err)
		}
		if got.Token != claim.Token {
			return invalidf("output %s was claimed by run %q at the same time: choose another output", out, got.Run)
		}
		c.log.Info("output claimed", "run", rs.Run, "output", out.String(), "overwrite", overwrite)
		return nil
	}
	return fmt.Errorf("output %s: its claim keeps changing", out)
}

// sameRun says why rs is not the run that made claim ("" when it is).
func sameRun(claim *Claim, rs pipeline.RunSettings) string {
	if claim.Run != rs.Run {
		return fmt.Sprintf("belongs to run %q (claimed %s)", claim.Run, claim.ClaimedAt.Format(time.RFC3339))
	}
	prev := claim.Settings
	prev.Queue = rs.Queue // how jobs are retried does not change what lands in the prefix
	if diff := prev.Differences(rs); diff != "" {
		return fmt.Sprintf("belongs to an earlier run %q with other %s (claimed %s)", claim.Run, diff, claim.ClaimedAt.Format(time.RFC3339))
	}
	return ""
}

func (c *Coordinator) readClaim(ctx context.Context, out shards.URL) (*Claim, error) {
	u := out.Join(ClaimName)
	r, err := c.store.Open(ctx, u)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var claim Claim
	if err := json.NewDecoder(r).Decode(&claim); err != nil {
		return nil, invalidf("output %s: its claim %s is unreadable (%v): overwrite it (--overwrite) if the prefix is yours", out, u, err)
	}
	return &claim, nil
}

// checkEmpty refuses an unclaimed prefix that holds files: capfilt did not write them for
// this run, and the run's outputs could replace them.
func (c *Coordinator) checkEmpty(ctx context.Context, rs pipeline.RunSettings) error {
	dir := prefixOf(rs.Output)
	objs, err := c.store.List(ctx, dir)
	if err != nil {
		return fmt.Errorf("output %s: %w", rs.Output, err)
	}
	var names []string
	for _, o := range objs {
		rel := strings.TrimPrefix(o.URL.Path, dir.Path)
		if strings.HasPrefix(o.URL.Base(), ".capfilt-") {
			continue // a write check or a temporary file of a writer that died
		}
		names = append(names, rel)
	}
	if len(names) == 0 {
		return nil
	}
	shown := strings.Join(names[:min(len(names), maxNamed)], ", ")
	if len(names) > maxNamed {
		shown += fmt.Sprintf(" (and %d more)", len(names)-maxNamed)
	}
	return invalidf("output %s already holds files capfilt did not write for run %q: %s; choose an empty output, or overwrite it (--overwrite)",
		rs.Output, rs.Run, shown)
}

// prefixOf is the prefix that lists the objects under an output, and only those
// ("out/", not "out", which also lists "outer/").
func prefixOf(out shards.URL) shards.URL {
	if out.Path != "" && !strings.HasSuffix(out.Path, "/") {
		out.Path += "/"
	}
	return out
}

// writeObject publishes a small object, replacing what is there.
func (c *Coordinator) writeObject(ctx context.Context, u shards.URL, data []byte) error {
	w, err := c.store.Create(ctx, u)
	if err != nil {
		return err
	}
	defer w.Abort()
	if _, err := bytes.NewReader(data).WriteTo(w); err != nil {
		return err
	}
	return w.Close()
}

func newToken() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}
