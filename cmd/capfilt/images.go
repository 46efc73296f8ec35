package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/capfilt/capfilt/imageproc"
	"github.com/capfilt/capfilt/pipeline/spec"
	"github.com/capfilt/capfilt/torch"
)

// maxImageBytes bounds what one image file or download may be.
const maxImageBytes = 64 << 20

// readImage reads a local file or an http(s) URL.
func readImage(ctx context.Context, src string) ([]byte, error) {
	if strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://") {
		ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
		if err != nil {
			return nil, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET %s: %s", src, resp.Status)
		}
		return readLimited(resp.Body, src)
	}
	f, err := os.Open(src)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readLimited(f, src)
}

func readLimited(r io.Reader, src string) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxImageBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxImageBytes {
		return nil, fmt.Errorf("%s: larger than %d MiB", src, maxImageBytes>>20)
	}
	return data, nil
}

// pixelBatch preprocesses images into one [B,3,S,S] tensor; images that fail are
// reported in errs (by index) and left out of the batch.
func pixelBatch(ctx context.Context, srcs []string, size int) (*torch.Tensor, []int, map[int]error) {
	errs := map[int]error{}
	var datas [][]byte
	var idx []int
	for i, s := range srcs {
		data, err := readImage(ctx, s)
		if err != nil {
			errs[i] = err
			continue
		}
		datas = append(datas, data)
		idx = append(idx, i)
	}
	if len(datas) == 0 {
		return nil, nil, errs
	}
	buf, res, err := imageproc.PreprocessBatch(nil, datas, size, imageproc.ImageLimits{}, 0)
	if err != nil {
		for _, i := range idx {
			errs[i] = err
		}
		return nil, nil, errs
	}
	var keep []int
	plane := 3 * size * size
	packed := buf[:0]
	for k, r := range res {
		if r.Err != nil {
			errs[idx[k]] = r.Err
			continue
		}
		packed = append(packed, buf[k*plane:(k+1)*plane]...)
		keep = append(keep, idx[k])
	}
	if len(keep) == 0 {
		return nil, nil, errs
	}
	return torch.FromFloat32(packed, int64(len(keep)), 3, int64(size), int64(size)), keep, errs
}

func settingsJSON(st spec.Generation) string {
	b, _ := json.Marshal(st)
	return string(b)
}
