package testenv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/color"
	"math/bits"
)

// DecodeXWD decodes an X window dump (xwd's output) of a TrueColor or
// DirectColor visual in ZPixmap format with 24 or 32 bits per pixel: what
// xwd writes for Xvfb's 24-bit screens. Other formats are an error.
func DecodeXWD(b []byte) (image.Image, error) {
	const fields = 25
	if len(b) < fields*4 {
		return nil, errors.New("xwd: short header")
	}
	// xwd writes its header big-endian whatever the host's byte order.
	h := make([]uint32, fields)
	for i := range h {
		h[i] = binary.BigEndian.Uint32(b[i*4:])
	}
	headerSize, version, format := h[0], h[1], h[2]
	width, height := int(h[4]), int(h[5])
	byteOrder, bpp, stride := h[7], h[11], int(h[12])
	class, rmask, gmask, bmask := h[13], h[14], h[15], h[16]
	ncolors := int(h[19])
	switch {
	case version != 7:
		return nil, fmt.Errorf("xwd: file version %d, want 7", version)
	case format != 2:
		return nil, fmt.Errorf("xwd: pixmap format %d, want ZPixmap (2)", format)
	case bpp != 24 && bpp != 32:
		return nil, fmt.Errorf("xwd: %d bits per pixel, want 24 or 32", bpp)
	case class != 4 && class != 5:
		return nil, fmt.Errorf("xwd: visual class %d, want TrueColor or DirectColor", class)
	case width <= 0 || height <= 0 || stride < width*int(bpp/8):
		return nil, fmt.Errorf("xwd: bad geometry %dx%d, %d bytes per line", width, height, stride)
	}
	off := int(headerSize) + ncolors*12 // each XWDColor is 12 bytes
	if off < 0 || len(b) < off+stride*height {
		return nil, fmt.Errorf("xwd: %d bytes, want %d", len(b), off+stride*height)
	}
	bytesPP := int(bpp / 8)
	img := image.NewRGBA(image.Rect(0, 0, width, height))
	for y := range height {
		row := b[off+y*stride:]
		for x := range width {
			var p uint32
			for i := range bytesPP {
				v := uint32(row[x*bytesPP+i])
				if byteOrder == 1 { // MSBFirst
					p = p<<8 | v
				} else {
					p |= v << (8 * i)
				}
			}
			img.SetRGBA(x, y, color.RGBA{channel(p, rmask), channel(p, gmask), channel(p, bmask), 0xff})
		}
	}
	return img, nil
}

// channel extracts an 8-bit channel under mask from pixel p.
func channel(p, mask uint32) uint8 {
	if mask == 0 {
		return 0
	}
	v := (p & mask) >> bits.TrailingZeros32(mask)
	width := bits.OnesCount32(mask)
	if width >= 8 {
		return uint8(v >> (width - 8))
	}
	return uint8(v << (8 - width))
}

// DiffPixels counts the pixels where a and b differ; images of different
// bounds differ everywhere.
func DiffPixels(a, b image.Image) int {
	if a.Bounds() != b.Bounds() {
		r := a.Bounds().Union(b.Bounds())
		return r.Dx() * r.Dy()
	}
	n := 0
	r := a.Bounds()
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			if a.At(x, y) != b.At(x, y) {
				n++
			}
		}
	}
	return n
}

// Crop returns the part of img that differs from the background image bg
// (the same screen before), with margin pixels around it; an empty
// rectangle when nothing differs.
func Crop(img, bg image.Image, margin int) image.Image {
	r := img.Bounds()
	box := image.Rectangle{}
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			if img.At(x, y) != bg.At(x, y) {
				box = box.Union(image.Rect(x, y, x+1, y+1))
			}
		}
	}
	if box.Empty() {
		return image.NewRGBA(image.Rectangle{})
	}
	box = image.Rect(box.Min.X-margin, box.Min.Y-margin, box.Max.X+margin, box.Max.Y+margin).Intersect(r)
	out := image.NewRGBA(image.Rect(0, 0, box.Dx(), box.Dy()))
	for y := box.Min.Y; y < box.Max.Y; y++ {
		for x := box.Min.X; x < box.Max.X; x++ {
			out.Set(x-box.Min.X, y-box.Min.Y, img.At(x, y))
		}
	}
	return out
}
