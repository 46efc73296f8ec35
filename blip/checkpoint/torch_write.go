package checkpoint

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"strconv"
)

// torchArchivePrefix is the folder torch >= 2 names its records under.
const torchArchivePrefix = "archive"

// WriteTorchZip writes tensors as a torch.save archive, atomically. torch.load (1.13 and
// 2.x, weights_only or not) reads it back as an OrderedDict of name -> tensor, or as
// {"model": OrderedDict} when wrapInModelKey is set: the layout of Salesforce's BLIP
// .pth files. Each tensor gets its own storage, stored uncompressed and 64-byte aligned
// as torch writes them, so ReadTorch (and torch's mmap loading) can map it.
func WriteTorchZip(path string, tensors []TensorToWrite, wrapInModelKey bool) error {
	if err := writeTorchZip(path, tensors, wrapInModelKey, false); err != nil {
		return fmt.Errorf("write torch checkpoint %s: %w", path, err)
	}
	return nil
}

func writeTorchZip(path string, tensors []TensorToWrite, wrapInModelKey, forceZip64 bool) error {
	if err := checkTensors(tensors); err != nil {
		return err
	}
	pkl := torchStateDictPickle(tensors, wrapInModelKey)
	return writeAtomic(path, func(f *os.File, w *bufio.Writer) error {
		z := &storedZip{f: f, w: w, forceZip64: forceZip64}
		small := func(name, content string) error {
			return z.add(torchArchivePrefix+"/"+name, int64(len(content)), func(w io.Writer) error {
				_, err := io.WriteString(w, content)
				return err
			})
		}
		if err := small("data.pkl", string(pkl)); err != nil {
			return err
		}
		if err := small("byteorder", "little"); err != nil {
			return err
		}
		for i, t := range tensors {
			name := torchArchivePrefix + "/data/" + strconv.Itoa(i)
			err := z.add(name, t.numBytes(), func(w io.Writer) error { return copyTensorData(w, t) })
			if err != nil {
				return err
			}
		}
		if err := small("version", "3\n"); err != nil {
			return err
		}
		return z.close()
	})
}

// torchStateDictPickle is the protocol-2 pickle torch.save writes for a state dict
// whose tensor i views all of storage i:
//
//	OrderedDict([(name, _rebuild_tensor_v2(persistent storage, 0, size, stride, False, OrderedDict())), ...])
func torchStateDictPickle(tensors []TensorToWrite, wrapInModelKey bool) []byte {
	p := &pickler{}
	p.op(0x80, 2) // PROTO 2
	if wrapInModelKey {
		p.op('}') // EMPTY_DICT
		p.unicode("model")
	}
	p.emptyOrderedDict()
	for start := 0; start < len(tensors); start += 1000 { // pickle's SETITEMS batch size
		p.op('(') // MARK
		for i := start; i < min(start+1000, len(tensors)); i++ {
			t := tensors[i]
			p.unicode(t.Name)
			p.global("torch._utils", "_rebuild_tensor_v2")
			p.op('(', '(') // MARK args, MARK persistent id
			p.unicode("storage")
			p.global("torch", t.DType.TorchStorageName())
			p.unicode(strconv.Itoa(i))
			p.unicode("cpu")
			p.int(t.numBytes() / int64(t.DType.Size()))
			p.op('t', 'Q') // TUPLE, BINPERSID
			p.int(0)       // storage offset
			p.intTuple(t.Shape)
			p.intTuple(RowMajorStrides(t.Shape))
			p.op(0x89) // NEWFALSE: requires_grad
			p.emptyOrderedDict()
			p.op('t', 'R') // TUPLE, REDUCE
		}
		p.op('u') // SETITEMS
	}
	if wrapInModelKey {
		p.op('s') // SETITEM
	}
	p.op('.') // STOP
	return p.b
}

type pickler struct{ b []byte }

func (p *pickler) op(ops ...byte) { p.b = append(p.b, ops...) }

func (p *pickler) unicode(s string) {
	p.op('X') // BINUNICODE
	p.b = binary.LittleEndian.AppendUint32(p.b, uint32(len(s)))
	p.b = append(p.b, s...)
}

func (p *pickler) global(module, name string) {
	p.op('c')
	p.b = append(p.b, module+"\n"+name+"\n"...)
}

func (p *pickler) emptyOrderedDict() {
	p.global("collections", "OrderedDict")
	p.op(')', 'R') // EMPTY_TUPLE, REDUCE
}

func (p *pickler) int(v int64) {
	switch {
	case v >= 0 && v < 1<<8:
		p.op('K', byte(v)) // BININT1
	case v >= 0 && v < 1<<16:
		p.op('M') // BININT2
		p.b = binary.LittleEndian.AppendUint16(p.b, uint16(v))
	case v >= -1<<31 && v < 1<<31:
		p.op('J') // BININT
		p.b = binary.LittleEndian.AppendUint32(p.b, uint32(int32(v)))
	default:
		p.op(0x8a, 8) // LONG1, 8 bytes of two's complement
		p.b = binary.LittleEndian.AppendUint64(p.b, uint64(v))
	}
}

func (p *pickler) intTuple(vs []int64) {
	if len(vs) == 0 {
		p.op(')')
		return
	}
	if len(vs) > 3 {
		p.op('(')
	}
	for _, v := range vs {
		p.int(v)
	}
	switch len(vs) {
	case 1, 2, 3:
		p.op(0x85 + byte(len(vs)-1)) // TUPLE1..3
	default:
		p.op('t')
	}
}
