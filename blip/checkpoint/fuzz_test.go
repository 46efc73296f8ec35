package checkpoint

import (
	"archive/zip"
	"bytes"
	"os"
	"testing"
)

// The fuzz targets hold the readers to: no panic, no unbounded allocation, and every
// record they do return lies inside the file. Seeds live in testdata/fuzz/<target>/
// (written by testdata/make_fixtures.py); run with e.g.
//
//	go test ./blip/checkpoint -run '^$' -fuzz FuzzUnpickle -fuzztime 1m

// checkRecordsInside asserts that every byte a record can touch is inside its storage
// and the storage inside the file.
func checkRecordsInside(t *testing.T, ck *Checkpoint, size int64) {
	for _, r := range ck.Tensors {
		start, end := r.Span()
		if r.StorageOffset < 0 || r.StorageBytes < 0 || r.StorageOffset+r.StorageBytes > size {
			t.Fatalf("%s: storage [%d, +%d) outside the %d-byte file", r.Name, r.StorageOffset, r.StorageBytes, size)
		}
		if start < r.StorageOffset || end > r.StorageOffset+r.StorageBytes {
			t.Fatalf("%s: span [%d, %d) outside its storage [%d, +%d)", r.Name, start, end, r.StorageOffset, r.StorageBytes)
		}
	}
}

// FuzzUnpickle runs an arbitrary data.pkl inside an otherwise valid torch archive.
func FuzzUnpickle(f *testing.F) {
	f.Add([]byte("\x80\x02}q\x00."))
	f.Add(stateDict("w", f32Tensor("0", 16, 2, 2, 3)))
	f.Fuzz(func(t *testing.T, pkl []byte) {
		var buf bytes.Buffer
		zw := zip.NewWriter(&buf)
		for _, r := range []archiveRecord{{name: "archive/data.pkl", data: pkl}, {name: "archive/data/0", data: make([]byte, 64)}} {
			w, _ := zw.CreateHeader(&zip.FileHeader{Name: r.name, Method: zip.Store})
			w.Write(r.data)
		}
		zw.Close()
		ck, err := readTorch(bytes.NewReader(buf.Bytes()), int64(buf.Len()), "fuzz.pth")
		if err != nil {
			return
		}
		checkRecordsInside(t, ck, int64(buf.Len()))
	})
}

// FuzzReadSafetensors reads an arbitrary file as safetensors.
func FuzzReadSafetensors(f *testing.F) {
	f.Add([]byte("\x02\x00\x00\x00\x00\x00\x00\x00{}"))
	f.Fuzz(func(t *testing.T, file []byte) {
		ck, err := readSafetensors(bytes.NewReader(file), int64(len(file)), "fuzz.safetensors")
		if err != nil {
			return
		}
		checkRecordsInside(t, ck, int64(len(file)))
		for _, r := range ck.Tensors {
			if r.StorageBytes != r.NumBytes() || r.Offset < 8 {
				t.Fatalf("%s: %d storage bytes for %d tensor bytes at %d", r.Name, r.StorageBytes, r.NumBytes(), r.Offset)
			}
		}
	})
}

// FuzzReadTorch reads an arbitrary file as a torch archive.
func FuzzReadTorch(f *testing.F) {
	for _, p := range []string{"testdata/state_dict.pth", "testdata/salesforce_namespace.pth", "testdata/legacy.pth"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, file []byte) {
		ck, err := readTorch(bytes.NewReader(file), int64(len(file)), "fuzz.pth")
		if err != nil {
			return
		}
		checkRecordsInside(t, ck, int64(len(file)))
	})
}
