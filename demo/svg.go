package demo

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// Series is one line of a chart, or one set of bars of a histogram.
type Series struct {
	Name   string
	Colour string
	X, Y   []float64
}

// chart geometry: the plot area inside the SVG.
const (
	chartW, chartH         = 360, 200
	padL, padR, padT, padB = 44, 10, 22, 30
	plotW, plotH           = chartW - padL - padR, chartH - padT - padB
	legendDY               = 12
)

// LineChart draws series as lines over a shared x axis, with axes, a few ticks and a
// legend; it is a self-contained <svg> element.
func LineChart(title, xLabel string, series []Series) string {
	xmin, xmax, ymin, ymax := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	for _, s := range series {
		for i := range s.X {
			xmin, xmax = math.Min(xmin, s.X[i]), math.Max(xmax, s.X[i])
			ymin, ymax = math.Min(ymin, s.Y[i]), math.Max(ymax, s.Y[i])
		}
	}
	if math.IsInf(xmin, 1) {
		xmin, xmax, ymin, ymax = 0, 1, 0, 1
	}
	ymin = math.Min(ymin, 0)
	if xmax == xmin {
		xmax = xmin + 1
	}
	if ymax == ymin {
		ymax = ymin + 1
	}
	var b strings.Builder
	open(&b, title)
	axes(&b, xmin, xmax, ymin, ymax, xLabel)
	for _, s := range series {
		var pts []string
		for i := range s.X {
			px, py := scale(s.X[i], xmin, xmax, padL, padL+plotW), scale(s.Y[i], ymin, ymax, padT+plotH, padT)
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px, py))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`, s.Colour, strings.Join(pts, " "))
	}
	legend(&b, series)
	b.WriteString("</svg>")
	return b.String()
}

// Histogram draws series of bin counts over [lo, hi] side by side in each bin, with a
// dashed vertical line at mark (the filter's threshold).
func Histogram(title, xLabel string, lo, hi float64, series []Series, mark float64) string {
	bins, ymax := 0, 1.0
	for _, s := range series {
		bins = max(bins, len(s.Y))
		for _, y := range s.Y {
			ymax = math.Max(ymax, y)
		}
	}
	var b strings.Builder
	open(&b, title)
	axes(&b, lo, hi, 0, ymax, xLabel)
	if bins > 0 {
		binW := float64(plotW) / float64(bins)
		barW := binW / float64(len(series))
		for k, s := range series {
			for i, y := range s.Y {
				x := float64(padL) + float64(i)*binW + float64(k)*barW
				top := scale(y, 0, ymax, padT+plotH, padT)
				fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s: %.0f</title></rect>`,
					x, top, math.Max(barW-0.5, 0.5), float64(padT+plotH)-top, s.Colour, html.EscapeString(s.Name), y)
			}
		}
	}
	mx := scale(mark, lo, hi, padL, padL+plotW)
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#000" stroke-dasharray="4 3"/>`, mx, padT, mx, padT+plotH)
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="10">threshold %.2f</text>`, mx+3, padT+10, mark)
	legend(&b, series)
	b.WriteString("</svg>")
	return b.String()
}

func open(b *strings.Builder, title string) {
	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif">`,
		chartW, chartH, chartW, chartH)
	fmt.Fprintf(b, `<text x="%d" y="14" font-size="12" font-weight="bold">%s</text>`, padL, html.EscapeString(title))
}

func axes(b *strings.Builder, xmin, xmax, ymin, ymax float64, xLabel string) {
	fmt.Fprintf(b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#999"/>`, padL, padT, plotW, plotH)
	for i := 0; i <= 4; i++ {
		f := float64(i) / 4
		y := float64(padT+plotH) - f*plotH
		fmt.Fprintf(b, `<text x="%d" y="%.1f" font-size="9" text-anchor="end">%s</text>`, padL-3, y+3, tick(ymin+f*(ymax-ymin)))
		x := float64(padL) + f*plotW
		fmt.Fprintf(b, `<text x="%.1f" y="%d" font-size="9" text-anchor="middle">%s</text>`, x, padT+plotH+11, tick(xmin+f*(xmax-xmin)))
	}
	fmt.Fprintf(b, `<text x="%d" y="%d" font-size="10" text-anchor="middle">%s</text>`, padL+plotW/2, chartH-3, html.EscapeString(xLabel))
}

func legend(b *strings.Builder, series []Series) {
	for i, s := range series {
		y := padT + 10 + i*legendDY
		x := padL + plotW - 110
		fmt.Fprintf(b, `<rect x="%d" y="%d" width="8" height="8" fill="%s"/><text x="%d" y="%d" font-size="10">%s</text>`,
			x, y-8, s.Colour, x+11, y, html.EscapeString(s.Name))
	}
}

func scale(v, lo, hi float64, to0, to1 int) float64 {
	return float64(to0) + (v-lo)/(hi-lo)*float64(to1-to0)
}

func tick(v float64) string {
	switch a := math.Abs(v); {
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}
