package filter

import (
	"errors"
	"math"
	"testing"
)

func TestAcceptRuleEdges(t *testing.T) {
	r := DefaultRule()
	cases := []struct {
		src  Source
		sc   Score
		keep bool
	}{
		{Web, Score{ITM: 0.5, ITC: -1}, true}, // exactly 0.5 is kept (≥)
		{Web, Score{ITM: math.Nextafter32(0.5, 0), ITC: 1}, false},
		{Synthetic, Score{ITM: 0.9}, true},
		{Synthetic, Score{ITM: 0.1}, false},
		{Human, Score{ITM: 0}, true}, // human captions bypass the filter
	}
	for _, c := range cases {
		got, err := r.Accept(c.src, c.sc)
		if err != nil || got != c.keep {
			t.Errorf("%s %+v: keep %v (%v), want %v", c.src, c.sc, got, err, c.keep)
		}
	}
	for _, sc := range []Score{{ITM: float32(math.NaN())}, {ITM: 0.7, ITC: float32(math.NaN())}} {
		if _, err := r.Accept(Web, sc); !errors.Is(err, ErrNaN) {
			t.Errorf("NaN score %+v: %v, want ErrNaN", sc, err)
		}
	}
	if _, err := r.Accept("scraped", Score{ITM: 1}); err == nil {
		t.Error("an unknown source must be an error")
	}
	r.FilterHuman = true
	if keep, _ := r.Accept(Human, Score{ITM: 0.2}); keep {
		t.Error("with FilterHuman a human caption is filtered like a web one")
	}
}

func TestConditionsParseAndApply(t *testing.T) {
	c, err := ParseCondition("itm>=0.6, itc >= 0.25")
	if err != nil || c.MinITM != 0.6 || c.MinITC != 0.25 {
		t.Fatalf("parse: %+v %v", c, err)
	}
	r := AcceptRule{Web: c, Synthetic: ITMOnly(0.5)}
	if keep, _ := r.Accept(Web, Score{ITM: 0.7, ITC: 0.2}); keep {
		t.Error("web caption below the ITC bar must go")
	}
	if keep, _ := r.Accept(Web, Score{ITM: 0.7, ITC: 0.25}); !keep {
		t.Error("web caption at both bars must stay")
	}
	if keep, _ := r.Accept(Synthetic, Score{ITM: 0.5, ITC: -0.9}); !keep {
		t.Error("the synthetic condition has no ITC bar")
	}
	if got := r.String(); got != "web: itm>=0.6,itc>=0.25; synthetic: itm>=0.5; human: keep" {
		t.Errorf("rule string %q", got)
	}
	only, err := ParseCondition("itc>=0.3")
	if err != nil || !math.IsInf(only.MinITM, -1) {
		t.Fatalf("ITC-only condition: %+v %v", only, err)
	}
	for _, bad := range []string{"", "itm>0.5", "itm>=x", "clip>=0.3", "itm>=NaN"} {
		if _, err := ParseCondition(bad); err == nil {
			t.Errorf("ParseCondition(%q) must fail", bad)
		}
	}
}
