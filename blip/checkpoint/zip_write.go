package checkpoint

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"os"
)

// storedZip writes a zip archive the way torch's PyTorchStreamWriter does: every entry
// stored (uncompressed) with its data aligned to 64 bytes by a padding extra field, so
// that a reader can map tensor bytes straight from the file. Sizes are known up front;
// each CRC is patched into its local header after the data has streamed past.
type storedZip struct {
	f       *os.File
	w       *bufio.Writer
	off     int64
	entries []zipEntry
	// forceZip64 writes zip64 fields even for small entries, so tests can exercise the
	// form multi-gigabyte checkpoints need without writing gigabytes.
	forceZip64 bool
}

type zipEntry struct {
	name      string
	size      int64
	crc       uint32
	headerOff int64
}

const (
	zipAlign       = 64
	zip32Max       = 0xffffffff
	zipPaddingID   = 0x4246 // "FB", the id torch's writer uses for its padding
	zipZip64ID     = 0x0001
	zipVersion20   = 20
	zipVersion45   = 45 // zip64
	zipLocalSig    = 0x04034b50
	zipCentralSig  = 0x02014b50
	zipEndSig      = 0x06054b50
	zip64EndSig    = 0x06064b50
	zip64LocSig    = 0x07064b50
	zipLocalHdrLen = 30
)

func (z *storedZip) zip64(size int64) bool { return z.forceZip64 || size >= zip32Max }

// add writes one stored entry of exactly size bytes read from data.
func (z *storedZip) add(name string, size int64, data func(io.Writer) error) error {
	e := zipEntry{name: name, size: size, headerOff: z.off}
	var extra []byte
	if z.zip64(size) {
		extra = binary.LittleEndian.AppendUint16(extra, zipZip64ID)
		extra = binary.LittleEndian.AppendUint16(extra, 16)
		extra = binary.LittleEndian.AppendUint64(extra, uint64(size))
		extra = binary.LittleEndian.AppendUint64(extra, uint64(size))
	}
	if dataOff := z.off + zipLocalHdrLen + int64(len(name)+len(extra)); dataOff%zipAlign != 0 {
		pad := (zipAlign - (dataOff+4)%zipAlign) % zipAlign
		extra = binary.LittleEndian.AppendUint16(extra, zipPaddingID)
		extra = binary.LittleEndian.AppendUint16(extra, uint16(pad))
		for range pad {
			extra = append(extra, 'Z')
		}
	}
	size32 := uint32(min(size, zip32Max))
	if z.zip64(size) {
		size32 = zip32Max
	}
	version := uint16(zipVersion20)
	if z.zip64(size) {
		version = zipVersion45
	}
	var h []byte
	h = binary.LittleEndian.AppendUint32(h, zipLocalSig)
	h = binary.LittleEndian.AppendUint16(h, version)
	h = binary.LittleEndian.AppendUint16(h, 0) // flags
	h = binary.LittleEndian.AppendUint16(h, 0) // method: stored
	h = binary.LittleEndian.AppendUint16(h, 0) // time
	h = binary.LittleEndian.AppendUint16(h, 0) // date
	h = binary.LittleEndian.AppendUint32(h, 0) // crc, patched below
	h = binary.LittleEndian.AppendUint32(h, size32)
	h = binary.LittleEndian.AppendUint32(h, size32)
	h = binary.LittleEndian.AppendUint16(h, uint16(len(name)))
	h = binary.LittleEndian.AppendUint16(h, uint16(len(extra)))
	h = append(h, name...)
	h = append(h, extra...)
	if _, err := z.w.Write(h); err != nil {
		return err
	}
	crc := crc32.NewIEEE()
	cw := &countWriter{w: io.MultiWriter(z.w, crc)}
	if err := data(cw); err != nil {
		return err
	}
	if cw.n != size {
		return fmt.Errorf("zip entry %s: wrote %d bytes, declared %d", name, cw.n, size)
	}
	e.crc = crc.Sum32()
	if err := z.w.Flush(); err != nil {
		return err
	}
	var crcBuf [4]byte
	binary.LittleEndian.PutUint32(crcBuf[:], e.crc)
	if _, err := z.f.WriteAt(crcBuf[:], e.headerOff+14); err != nil {
		return err
	}
	z.off += int64(len(h)) + size
	z.entries = append(z.entries, e)
	return nil
}

// close writes the central directory and the end records (zip64 ones when needed).
func (z *storedZip) close() error {
	cdOff := z.off
	var cd []byte
	for _, e := range z.entries {
		var z64 []byte
		size32, off32 := uint32(e.size), uint32(e.headerOff)
		if z.zip64(e.size) {
			size32 = zip32Max
			z64 = binary.LittleEndian.AppendUint64(z64, uint64(e.size))
			z64 = binary.LittleEndian.AppendUint64(z64, uint64(e.size))
		}
		if z.forceZip64 || e.headerOff >= zip32Max {
			off32 = zip32Max
			z64 = binary.LittleEndian.AppendUint64(z64, uint64(e.headerOff))
		}
		var extra []byte
		version := uint16(zipVersion20)
		if len(z64) > 0 {
			version = zipVersion45
			extra = binary.LittleEndian.AppendUint16(extra, zipZip64ID)
			extra = binary.LittleEndian.AppendUint16(extra, uint16(len(z64)))
			extra = append(extra, z64...)
		}
		cd = binary.LittleEndian.AppendUint32(cd, zipCentralSig)
		cd = binary.LittleEndian.AppendUint16(cd, version) // made by
		cd = binary.LittleEndian.AppendUint16(cd, version) // needed
		cd = binary.LittleEndian.AppendUint16(cd, 0)       // flags
		cd = binary.LittleEndian.AppendUint16(cd, 0)       // method: stored
		cd = binary.LittleEndian.AppendUint16(cd, 0)       // time
		cd = binary.LittleEndian.AppendUint16(cd, 0)       // date
		cd = binary.LittleEndian.AppendUint32(cd, e.crc)
		cd = binary.LittleEndian.AppendUint32(cd, size32)
		cd = binary.LittleEndian.AppendUint32(cd, size32)
		cd = binary.LittleEndian.AppendUint16(cd, uint16(len(e.name)))
		cd = binary.LittleEndian.AppendUint16(cd, uint16(len(extra)))
		cd = binary.LittleEndian.AppendUint16(cd, 0) // comment length
		cd = binary.LittleEndian.AppendUint16(cd, 0) // disk
		cd = binary.LittleEndian.AppendUint16(cd, 0) // internal attributes
		cd = binary.LittleEndian.AppendUint32(cd, 0) // external attributes
		cd = binary.LittleEndian.AppendUint32(cd, off32)
		cd = append(cd, e.name...)
		cd = append(cd, extra...)
	}
	cdSize := int64(len(cd))
	n := len(z.entries)
	need64 := z.forceZip64 || n >= 0xffff || cdOff >= zip32Max || cdSize >= zip32Max
	if need64 {
		end64Off := cdOff + cdSize
		cd = binary.LittleEndian.AppendUint32(cd, zip64EndSig)
		cd = binary.LittleEndian.AppendUint64(cd, 44) // size of the rest of this record
		cd = binary.LittleEndian.AppendUint16(cd, zipVersion45)
		cd = binary.LittleEndian.AppendUint16(cd, zipVersion45)
		cd = binary.LittleEndian.AppendUint32(cd, 0) // this disk
		cd = binary.LittleEndian.AppendUint32(cd, 0) // disk with the directory
		cd = binary.LittleEndian.AppendUint64(cd, uint64(n))
		cd = binary.LittleEndian.AppendUint64(cd, uint64(n))
		cd = binary.LittleEndian.AppendUint64(cd, uint64(cdSize))
		cd = binary.LittleEndian.AppendUint64(cd, uint64(cdOff))
		cd = binary.LittleEndian.AppendUint32(cd, zip64LocSig)
		cd = binary.LittleEndian.AppendUint32(cd, 0)
		cd = binary.LittleEndian.AppendUint64(cd, uint64(end64Off))
		cd = binary.LittleEndian.AppendUint32(cd, 1) // disks
	}
	cd = binary.LittleEndian.AppendUint32(cd, zipEndSig)
	cd = binary.LittleEndian.AppendUint16(cd, 0)
	cd = binary.LittleEndian.AppendUint16(cd, 0)
	// With a zip64 end record, the classic one says "look there" with all-ones fields.
	records, size32, off32 := uint16(n), uint32(cdSize), uint32(cdOff)
	if need64 {
		records, size32, off32 = 0xffff, zip32Max, zip32Max
	}
	cd = binary.LittleEndian.AppendUint16(cd, records)
	cd = binary.LittleEndian.AppendUint16(cd, records)
	cd = binary.LittleEndian.AppendUint32(cd, size32)
	cd = binary.LittleEndian.AppendUint32(cd, off32)
	cd = binary.LittleEndian.AppendUint16(cd, 0) // comment length
	if _, err := z.w.Write(cd); err != nil {
		return err
	}
	z.off += int64(len(cd))
	return nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
