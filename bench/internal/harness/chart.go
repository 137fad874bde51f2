package harness

import (
	"fmt"
	"html"
	"math"
	"strings"
)

var colors = map[string]string{
	"fanout":            "#d62728",
	"centrifuge":        "#1f77b4",
	"centrifuge-nohist": "#17becf",
	"hub":               "#2ca02c",
	"raw":               "#7f7f7f",
}

// chart draws maximum sustained deliveries per second against connections,
// one panel per payload size, one line per server, with the median and
// a bar from the lowest to the highest round.
func chart(a *agg) string {
	const (
		panelW, panelH = 360.0, 260.0
		left, top      = 70.0, 52.0
		gapX           = 50.0
		legendH        = 26.0
	)
	width := left + float64(len(a.sizes))*(panelW+gapX) - gapX + 20
	rows := (len(a.peers) + 2) / 3
	height := top + panelH + 50 + float64(rows)*legendH
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w(`<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n",
		width, height, width, height)
	w(`<rect width="100%%" height="100%%" fill="white"/>` + "\n")
	title := fmt.Sprintf("Maximum sustained deliveries/s (%s mode; median of %d round(s), bars: min–max)", a.res.Mode, a.rounds)
	w(`<text x="%.0f" y="20" font-size="14" font-weight="bold">%s</text>`+"\n", left, html.EscapeString(title))

	ymax := 0.0
	for _, c := range a.cells {
		for _, v := range c.max {
			ymax = math.Max(ymax, v)
		}
	}
	ymax, step := niceScale(ymax)

	minN, maxN := float64(a.ns[0]), float64(a.ns[0])
	for _, n := range a.ns {
		minN, maxN = math.Min(minN, float64(n)), math.Max(maxN, float64(n))
	}
	for pi, size := range a.sizes {
		x0 := left + float64(pi)*(panelW+gapX)
		px := func(n int) float64 {
			if maxN == minN {
				return x0 + panelW/2
			}
			pad := 40.0
			return x0 + pad + (panelW-2*pad)*(math.Log(float64(n))-math.Log(minN))/(math.Log(maxN)-math.Log(minN))
		}
		py := func(v float64) float64 { return top + panelH - panelH*v/ymax }
		w(`<text x="%.1f" y="%.0f" font-weight="bold">%d B payload</text>`+"\n", x0+panelW/2-35, top-8, size)
		for v := 0.0; v <= ymax+step/2; v += step {
			w(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", x0, py(v), x0+panelW, py(v))
			w(`<text x="%.1f" y="%.1f" text-anchor="end" fill="#444">%s</text>`+"\n", x0-6, py(v)+4, rate(v))
		}
		w(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#888"/>`+"\n", x0, top, panelW, panelH)
		for _, n := range a.ns {
			w(`<text x="%.1f" y="%.1f" text-anchor="middle" fill="#444">%s</text>`+"\n", px(n), top+panelH+16, thousands(n))
		}
		w(`<text x="%.1f" y="%.1f" text-anchor="middle">connections</text>`+"\n", x0+panelW/2, top+panelH+34)
		for i, p := range a.peers {
			col := colors[p]
			if col == "" {
				col = "#000"
			}
			off := (float64(i) - float64(len(a.peers)-1)/2) * 4 // keep bars apart
			var pts []string
			for _, n := range a.ns {
				st := summarize(a.cell(p, n, size).max)
				if st.N == 0 {
					continue
				}
				x := px(n) + off
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, py(st.Med)))
				if st.Max > st.Min {
					w(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="1.5"/>`+"\n", x, py(st.Min), x, py(st.Max), col)
				}
				w(`<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"><title>%s, %s conns, %d B: %s/s</title></circle>`+"\n",
					x, py(st.Med), col, html.EscapeString(label(p)), thousands(n), size, rate(st.Med))
			}
			if len(pts) > 1 {
				w(`<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", strings.Join(pts, " "), col)
			}
		}
	}
	w(`<text transform="translate(16 %.1f) rotate(-90)" text-anchor="middle">deliveries/s</text>`+"\n", top+panelH/2)
	for i, p := range a.peers {
		x := left + float64(i%3)*220
		y := top + panelH + 58 + float64(i/3)*legendH
		col := colors[p]
		w(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="3"/>`+"\n", x, y-4, x+22, y-4, col)
		w(`<text x="%.1f" y="%.1f">%s</text>`+"\n", x+28, y, html.EscapeString(label(p)))
	}
	w("</svg>\n")
	return b.String()
}

// niceScale rounds max up to a round axis end and returns the tick step.
func niceScale(max float64) (end, step float64) {
	if max <= 0 {
		return 1, 0.25
	}
	raw := max / 5
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	switch r := raw / mag; {
	case r <= 1:
		step = mag
	case r <= 2:
		step = 2 * mag
	case r <= 2.5:
		step = 2.5 * mag
	case r <= 5:
		step = 5 * mag
	default:
		step = 10 * mag
	}
	return math.Ceil(max/step) * step, step
}
