package main

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"math"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// Panel is one chart: arrivals per second, with the mean and twice the mean
// drawn across.
type Panel struct {
	Title string
	Bins  []int
	Mean  float64
}

var (
	white = color.RGBA{255, 255, 255, 255}
	black = color.RGBA{0, 0, 0, 255}
	grey  = color.RGBA{210, 210, 210, 255}
	blue  = color.RGBA{40, 90, 200, 255}
	green = color.RGBA{20, 150, 60, 255}
	red   = color.RGBA{210, 40, 40, 255}
)

const (
	marginLeft  = 64
	marginRight = 16
	panelHeight = 300
	panelTop    = 40 // title above the plot area
	panelBottom = 36 // tick labels and axis title below it
)

// Plot draws the panels one above the other, one pixel per second on a
// shared y scale, and encodes them as PNG.
func Plot(w io.Writer, panels []Panel) error {
	width, top := 0, 0
	ymax := 1
	for _, p := range panels {
		width = max(width, len(p.Bins))
		for _, v := range p.Bins {
			ymax = max(ymax, v)
		}
		ymax = max(ymax, int(math.Ceil(2*p.Mean)))
	}
	step := niceStep(ymax)
	ymax = (ymax/step + 1) * step
	img := image.NewRGBA(image.Rect(0, 0, marginLeft+width+marginRight, len(panels)*(panelTop+panelHeight+panelBottom)))
	draw.Draw(img, img.Bounds(), image.NewUniform(white), image.Point{}, draw.Src)
	for _, p := range panels {
		y0 := top + panelTop + panelHeight // the x axis
		yOf := func(v float64) int { return y0 - int(math.Round(v/float64(ymax)*panelHeight)) }
		text(img, marginLeft, top+panelTop-12, p.Title, black)
		for v := 0; v <= ymax; v += step {
			hline(img, marginLeft, marginLeft+width, yOf(float64(v)), grey, 1)
			s := fmt.Sprint(v)
			text(img, marginLeft-8-7*len(s), yOf(float64(v))+4, s, black)
		}
		for x, v := range p.Bins {
			vline(img, marginLeft+x, yOf(float64(v)), y0, blue)
		}
		hline(img, marginLeft, marginLeft+len(p.Bins), yOf(p.Mean), green, 1)
		hline(img, marginLeft, marginLeft+len(p.Bins), yOf(2*p.Mean), red, 2)
		hline(img, marginLeft, marginLeft+width, y0, black, 1)
		vline(img, marginLeft, top+panelTop, y0, black)
		for s := 0; s <= width; s += 60 {
			x := marginLeft + s
			n := 3
			if s%300 == 0 {
				n = 7
				l := fmt.Sprintf("%dm", s/60)
				text(img, x-7*len(l)/2, y0+20, l, black)
			}
			vline(img, x, y0, y0+n, black)
		}
		text(img, marginLeft+width-7*27, y0+33, "time (1 px = 1 s)", black)
		text(img, 4, top+panelTop-12, "req/s", black)
		legend := "HEAD/s   green: mean   red: 2x mean"
		text(img, marginLeft+width-7*len(legend), top+panelTop-12, legend, blue)
		top += panelTop + panelHeight + panelBottom
	}
	return png.Encode(w, img)
}

// niceStep is a 1-2-5 grid step giving about five lines up to ymax.
func niceStep(ymax int) int {
	raw := float64(ymax) / 5
	pow := math.Pow(10, math.Floor(math.Log10(math.Max(raw, 1))))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*pow >= raw {
			return int(m * pow)
		}
	}
	return int(10 * pow)
}

func hline(img *image.RGBA, x0, x1, y int, c color.Color, thick int) {
	for t := range thick {
		for x := x0; x <= x1; x++ {
			img.Set(x, y+t, c)
		}
	}
}

func vline(img *image.RGBA, x, y0, y1 int, c color.Color) {
	for y := min(y0, y1); y <= max(y0, y1); y++ {
		img.Set(x, y, c)
	}
}

func text(img *image.RGBA, x, y int, s string, c color.Color) {
	d := font.Drawer{Dst: img, Src: image.NewUniform(c), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}
