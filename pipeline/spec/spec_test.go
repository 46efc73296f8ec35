package spec

import (
	"encoding/json"
	"errors"
	"math"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestEachModeHasItsPublishedDefaults(t *testing.T) {
	for _, tc := range []struct {
		mode                 Mode
		topP, penalty        float64
		topK, max, min, beam int
	}{
		{Nucleus, 0.9, 1.1, 50, 30, 10, 1},
		{Beam, 1, 1, 0, 20, 5, 3},
		{Greedy, 1, 1, 0, 20, 0, 1},
	} {
		g, err := GenerationDefaults(tc.mode)
		if err != nil || g.Mode != tc.mode || g.TopP != tc.topP || g.RepetitionPenalty != tc.penalty || g.TopK != tc.topK ||
			g.MaxLength != tc.max || g.MinLength != tc.min || g.NumBeams != tc.beam || g.Prompt != DefaultPrompt {
			t.Errorf("%s defaults %+v (%v)", tc.mode, g, err)
		}
		if err := g.Validate(); err != nil {
			t.Errorf("%s defaults invalid: %v", tc.mode, err)
		}
	}
	if _, err := GenerationDefaults("topk"); err == nil || !strings.Contains(err.Error(), `mode "topk"`) {
		t.Fatalf("unknown mode: %v", err)
	}
}

func TestGenerationProblemsNameTheSettingAndValue(t *testing.T) {
	bad := NucleusDefaults()
	bad.TopP, bad.MinLength, bad.NumBeams = 1.5, 40, 0
	err := bad.Validate()
	var ps Problems
	if !errors.As(err, &ps) || len(ps) != 3 {
		t.Fatalf("validate: %v", err)
	}
	for _, want := range []string{"top-p 1.5: must be in (0, 1]", "min-length 40: must be between 0 and max-length 30", "num-beams 0: must be at least 1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
	// Greedy ignores the sampler's knobs, but not the beam count.
	g := GreedyDefaults()
	g.TopP, g.NumBeams = 7, -1
	if err := g.Validate(); err == nil || strings.Contains(err.Error(), "top-p") || !strings.Contains(err.Error(), "num-beams -1") {
		t.Fatalf("greedy: %v", err)
	}
}

func TestGenerationJSONRoundTripsAndRefusesUnknownModes(t *testing.T) {
	g := BeamDefaults()
	g.Seed = 1<<63 + 5
	data, err := json.Marshal(g)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"top_p":1`) || !strings.Contains(string(data), `"mode":"beam"`) {
		t.Fatalf("json %s", data)
	}
	var back Generation
	if err := json.Unmarshal(data, &back); err != nil || back != g {
		t.Fatalf("round trip %+v (%v)", back, err)
	}
	if err := json.Unmarshal([]byte(`{"mode":"sample"}`), &back); err == nil {
		t.Fatal("mode sample must be refused")
	}
}

func TestAcceptRuleEdges(t *testing.T) {
	r := DefaultRule()
	cases := []struct {
		src      Source
		itm, itc float64
		keep     bool
	}{
		{Web, 0.5, -1, true}, // exactly 0.5 is kept (≥)
		{Web, math.Nextafter(0.5, 0), 1, false},
		{Synthetic, 0.9, 0, true},
		{Synthetic, 0.1, 0, false},
		{Human, 0, 0, true}, // human captions bypass the filter
	}
	for _, c := range cases {
		got, err := r.Keep(c.src, c.itm, c.itc)
		if err != nil || got != c.keep {
			t.Errorf("%s itm %v itc %v: keep %v (%v), want %v", c.src, c.itm, c.itc, got, err, c.keep)
		}
	}
	for _, sc := range [][2]float64{{math.NaN(), 0}, {0.7, math.NaN()}} {
		if _, err := r.Keep(Web, sc[0], sc[1]); !errors.Is(err, ErrNaN) {
			t.Errorf("NaN score %v: %v, want ErrNaN", sc, err)
		}
	}
	if _, err := r.Keep("scraped", 1, 1); err == nil {
		t.Error("an unknown source must be an error")
	}
	r.FilterHuman = true
	if keep, _ := r.Keep(Human, 0.2, 0); keep {
		t.Error("with FilterHuman a human caption is filtered like a web one")
	}
}

func TestConditionsParseApplyAndRoundTrip(t *testing.T) {
	c, err := ParseCondition("itm>=0.6, itc >= 0.25")
	if err != nil || c.MinITM != 0.6 || c.MinITC != 0.25 {
		t.Fatalf("parse: %+v %v", c, err)
	}
	r := AcceptRule{Web: c, Synthetic: ITMOnly(0.5)}
	if keep, _ := r.Keep(Web, 0.7, 0.2); keep {
		t.Error("web caption below the ITC bar must go")
	}
	if keep, _ := r.Keep(Web, 0.7, 0.25); !keep {
		t.Error("web caption at both bars must stay")
	}
	if keep, _ := r.Keep(Synthetic, 0.5, -0.9); !keep {
		t.Error("the synthetic condition has no ITC bar")
	}
	if got := r.String(); got != "web: itm>=0.6,itc>=0.25; synthetic: itm>=0.5; human: keep" {
		t.Errorf("rule string %q", got)
	}
	only, err := ParseCondition("itc>=0.3")
	if err != nil || !math.IsNaN(only.MinITM) || only.String() != "itc>=0.3" {
		t.Fatalf("ITC-only condition: %+v %v", only, err)
	}
	if keep, _ := (AcceptRule{Web: only}).Keep(Web, 0, 0.3); !keep {
		t.Error("an ITC-only condition sets no ITM bar")
	}
	for _, bad := range []string{"", "itm>0.5", "itm>=x", "clip>=0.3", "itm>=NaN", "itm>=Inf"} {
		if _, err := ParseCondition(bad); err == nil {
			t.Errorf("ParseCondition(%q) must fail", bad)
		}
	}
	// JSON has no NaN: conditions travel in their text form, and come back the same.
	data, err := json.Marshal(AcceptRule{Web: only, Synthetic: ITMOnly(0), FilterHuman: true})
	if err != nil || string(data) != `{"web":"itc\u003e=0.3","synthetic":"itm\u003e=0","filter_human":true}` {
		t.Fatalf("json %s (%v)", data, err)
	}
	var back AcceptRule
	if err := json.Unmarshal(data, &back); err != nil || back.String() != "web: itc>=0.3; synthetic: itm>=0; human: as web" {
		t.Fatalf("back %v (%v)", back, err)
	}
}

func TestThresholdsOutOfTheirScoresRangeAreProblems(t *testing.T) {
	for _, tc := range []struct {
		rule AcceptRule
		want string
	}{
		{AcceptRule{Web: ITMOnly(2), Synthetic: ITMOnly(0.5)}, `keep-web-only-if "itm>=2": itm must be in [0, 1]`},
		{AcceptRule{Web: ITMOnly(0.5), Synthetic: ITMOnly(-1)}, `keep-synthetic-only-if "itm>=-1": itm must be in [0, 1]`},
		{AcceptRule{Web: Condition{MinITM: 0.5, MinITC: 5}, Synthetic: ITMOnly(0.5)}, `itc must be in [-1, 1]`},
		{AcceptRule{Web: Condition{MinITM: math.NaN(), MinITC: math.NaN()}, Synthetic: ITMOnly(0.5)}, `sets no bar`},
	} {
		if err := tc.rule.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.rule, err, tc.want)
		}
	}
	if err := (AcceptRule{Web: Condition{MinITM: 1, MinITC: -1}, Synthetic: ITMOnly(0)}).Validate(); err != nil {
		t.Errorf("the range ends are bars: %v", err)
	}
}

func TestQueueSettingsValidateAndTravelAsDurationStrings(t *testing.T) {
	q := DefaultQueue()
	if err := q.Validate(); err != nil || q.BackoffAfter(1) != 5*time.Second || q.BackoffAfter(99) != 5*time.Minute {
		t.Fatalf("defaults %+v: %v", q, err)
	}
	data, err := json.Marshal(q)
	if err != nil || string(data) != `{"ack_wait":"1m0s","max_deliver":5,"backoff":"5s,30s,2m0s,5m0s"}` {
		t.Fatalf("json %s (%v)", data, err)
	}
	var back Queue
	if err := json.Unmarshal(data, &back); err != nil || back.String() != q.String() {
		t.Fatalf("back %+v (%v)", back, err)
	}
	bad := Queue{AckWait: 10 * time.Millisecond, MaxDeliver: 0, Backoff: Backoff{time.Second, -time.Second}}
	err = bad.Validate()
	for _, want := range []string{"ack-wait 10ms: must be at least 1s", "max-deliver 0", `retry-backoff "1s,-1s": every wait must be > 0`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v lacks %q", err, want)
		}
	}
	if _, err := ParseBackoff("5s,soon"); err == nil {
		t.Error("a backoff that is not durations must fail")
	}
	if got := (Queue{}).WithDefaults(); got.String() != DefaultQueue().String() {
		t.Errorf("zero queue with defaults %+v", got)
	}
}

func TestSpecImportsOnlyTheStandardLibrary(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if p != "github.com/capfilt/capfilt/pipeline/spec" {
			t.Errorf("spec depends on %s", p)
		}
	}
}
