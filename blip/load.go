package blip

import (
	"fmt"
	"math"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/capfilt/capfilt/blip/checkpoint"
	"github.com/capfilt/capfilt/torch"
)

// LoadOptions adjust Load.
type LoadOptions struct {
	// Config overrides the config.json found beside the weights (or inferred from shapes).
	Config *Config
	// AllowPartial loads what matches even when keys are missing, unexpected or of the
	// wrong shape; without it any of those is an error.
	AllowPartial bool
}

// LoadReport says how a checkpoint's keys met the model's parameters.
type LoadReport struct {
	Path         string   `json:"path"`
	Format       string   `json:"format"`
	Naming       string   `json:"naming"` // "hf" or "original"
	ConfigSource string   `json:"config_source"`
	Parts        []string `json:"parts"`
	Loaded       int      `json:"loaded"`
	Missing      []string `json:"missing,omitempty"`
	Unexpected   []string `json:"unexpected,omitempty"`
	Mismatched   []string `json:"mismatched,omitempty"` // "name: checkpoint [..] vs model [..]"
	Resized      []string `json:"resized,omitempty"`    // position embeddings interpolated at load
	Ignored      []string `json:"ignored,omitempty"`    // "name (why)"
	Converted    []string `json:"converted,omitempty"`  // tensors stored in another dtype
	Warnings     []string `json:"warnings,omitempty"`

	weightsKey string
}

// Clean reports whether every parameter was found with the right shape and nothing
// unknown was left over.
func (r *LoadReport) Clean() bool {
	return len(r.Missing) == 0 && len(r.Unexpected) == 0 && len(r.Mismatched) == 0
}

func (r *LoadReport) problem() error {
	if r.Clean() {
		return nil
	}
	var parts []string
	list := func(what string, v []string) {
		if len(v) == 0 {
			return
		}
		shown := v
		if len(shown) > 5 {
			shown = append(append([]string(nil), v[:5]...), fmt.Sprintf("… %d more", len(v)-5))
		}
		parts = append(parts, fmt.Sprintf("%d %s (%s)", len(v), what, strings.Join(shown, ", ")))
	}
	list("missing", r.Missing)
	list("unexpected", r.Unexpected)
	list("shape-mismatched", r.Mismatched)
	return fmt.Errorf("checkpoint %s does not match the model: %s; allow a partial load to use it anyway", r.Path, strings.Join(parts, "; "))
}

// Load reads a BLIP checkpoint: an HF directory (config.json + model.safetensors, a
// sharded index, or pytorch_model.bin), a .safetensors file, or an original Salesforce
// .pth. The model gets exactly the parts the checkpoint holds. Float32 weights are
// memory-mapped, not copied; others are converted to float32 on the host.
func Load(path string, opts LoadOptions) (*Model, *LoadReport, error) {
	ck, err := checkpoint.Open(path)
	if err != nil {
		return nil, nil, err
	}
	rep := &LoadReport{Path: path, Format: ck.Format.String(), Naming: "hf", weightsKey: ck.WeightsKey}
	names := make([]string, len(ck.Tensors))
	for i, r := range ck.Tensors {
		names[i] = r.Name
	}
	original := isOriginalNaming(names)
	records := map[string]checkpoint.TensorRecord{}
	for _, r := range ck.Tensors {
		name := r.Name
		if original {
			name = OriginalToHF(name)
		}
		records[name] = r
	}
	if original {
		rep.Naming = "original"
	}

	cfg, src, err := resolveConfig(path, ck, records, opts.Config)
	if err != nil {
		return nil, rep, err
	}
	rep.ConfigSource = src
	parts := partsFromKeys(records)
	if parts.TextEncoder && parts.TextDecoder {
		parts.ShareText = ck.Metadata["capfilt.shared_text"] == "true" || sharesTextWeights(records)
	}
	m, err := New(cfg, parts)
	if err != nil {
		return nil, rep, fmt.Errorf("%s: %w", path, err)
	}
	rep.Parts = m.partNames()
	if err := m.loadRecords(ck, records, rep); err != nil {
		m.Close()
		return nil, rep, err
	}
	if !opts.AllowPartial {
		if err := rep.problem(); err != nil {
			m.Close()
			return nil, rep, err
		}
	}
	return m, rep, nil
}

func (m *Model) partNames() []string {
	var out []string
	add := func(ok bool, name string) {
		if ok {
			out = append(out, name)
		}
	}
	add(m.VisionModel != nil, "vision")
	add(m.TextEncoder != nil, "text_encoder")
	add(m.TextDecoder != nil, "text_decoder")
	add(m.VisionProj != nil, "itc")
	add(m.ITMHead != nil, "itm")
	add(m.Temp != nil || m.hasParam("temp"), "temp")
	add(m.SharedText, "shared_text")
	return out
}

func (m *Model) hasParam(name string) bool { _, ok := m.ps.get(name); return ok }

// sharesTextWeights tells a pretraining checkpoint, whose decoder shares the encoder's
// weights but self-attention: torch saves the tie as one storage under both names, other
// writers as equal copies. Every shared name is verified at load.
func sharesTextWeights(records map[string]checkpoint.TensorRecord) bool {
	enc, okE := records["text_encoder.encoder.layer.0.intermediate.dense.weight"]
	dec, okD := records["text_decoder.bert.encoder.layer.0.intermediate.dense.weight"]
	if !okE || !okD {
		return false
	}
	if enc.StorageKey == dec.StorageKey && enc.Offset == dec.Offset {
		return true
	}
	a, err1 := readRecord(enc)
	b, err2 := readRecord(dec)
	return err1 == nil && err2 == nil && len(a) > 0 && string(a) == string(b)
}

func readRecord(r checkpoint.TensorRecord) ([]byte, error) {
	f, err := os.Open(r.Path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return r.ReadData(f)
}

func partsFromKeys(records map[string]checkpoint.TensorRecord) Parts {
	var p Parts
	for name := range records {
		switch {
		case strings.HasPrefix(name, "vision_model."):
			p.Vision = true
		case strings.HasPrefix(name, "text_encoder.embeddings."), strings.HasPrefix(name, "text_encoder.encoder."):
			p.TextEncoder = true
		case strings.HasPrefix(name, "text_decoder.bert."):
			p.TextDecoder = true
		case name == "vision_proj.weight":
			p.ITC = true
		case name == "itm_head.weight":
			p.ITM = true
		case name == "temp":
			p.Temp = true
		}
	}
	return p
}

// loadRecords gives every parameter its tensor from the checkpoint and fills the report.
func (m *Model) loadRecords(ck *checkpoint.Checkpoint, records map[string]checkpoint.TensorRecord, rep *LoadReport) error {
	mapper := newRecordMapper()
	defer mapper.close()
	used := map[string]bool{}
	for _, p := range m.ps.list {
		r, ok := records[p.Name]
		if !ok {
			rep.Missing = append(rep.Missing, p.Name)
			continue
		}
		used[p.Name] = true
		t, err := mapper.view(r)
		if err != nil {
			return err
		}
		if r.DType != checkpoint.F32 {
			f := t.ToDType(torch.Float32)
			t.Free()
			if t = f; t.Err() != nil {
				return fmt.Errorf("%s: converting %s from %v: %w", r.Path, r.Name, r.DType, t.Err())
			}
			rep.Converted = append(rep.Converted, fmt.Sprintf("%s (%v)", p.Name, r.DType))
		}
		if !slices.Equal(r.Shape, p.Shape) {
			if strings.HasSuffix(p.Name, "embeddings.position_embedding") && len(r.Shape) == 3 && len(p.Shape) == 3 && r.Shape[2] == p.Shape[2] {
				grid := int(math.Round(math.Sqrt(float64(p.Shape[1] - 1))))
				resized, err := interpolatePositions(t, grid)
				t.Free()
				if err != nil {
					return fmt.Errorf("%s: %s: %w", r.Path, r.Name, err)
				}
				t = resized
				rep.Resized = append(rep.Resized, fmt.Sprintf("%s %v → %v", p.Name, r.Shape, p.Shape))
			} else {
				t.Free()
				rep.Mismatched = append(rep.Mismatched, fmt.Sprintf("%s: checkpoint %v vs model %v", p.Name, r.Shape, p.Shape))
				continue
			}
		}
		if old := p.Tensor(); old != nil {
			old.Free()
		}
		p.set(t)
		rep.Loaded++
	}
	// Names of shared tensors (the decoder's copies of encoder weights) must hold the
	// same values as the tensor they share.
	for alias, owner := range m.ps.aliases {
		r, ok := records[alias]
		if !ok {
			continue
		}
		used[alias] = true
		p, _ := m.ps.get(owner)
		if p.Tensor() == nil || r.StorageKey == records[owner].StorageKey && r.Offset == records[owner].Offset {
			continue
		}
		diff, err := mapper.maxAbsDiff(r, p.Tensor())
		if err != nil || diff != 0 {
			rep.Mismatched = append(rep.Mismatched, fmt.Sprintf("%s: should equal the shared %s (max |diff| %g, %v)", alias, owner, diff, err))
		}
	}
	m.checkTiedHead(records, used, mapper, rep)
	var unexpected []string
	for name, r := range records {
		if used[name] {
			continue
		}
		if why := ignoredKey(r.Name); why != "" {
			rep.Ignored = append(rep.Ignored, fmt.Sprintf("%s (%s)", r.Name, why))
			continue
		}
		unexpected = append(unexpected, r.Name)
	}
	sort.Strings(unexpected)
	sort.Strings(rep.Ignored)
	rep.Unexpected = unexpected
	for _, s := range ck.Skipped {
		rep.Warnings = append(rep.Warnings, "non-tensor entry skipped: "+s)
	}
	return nil
}

// checkTiedHead accepts the LM head's stored output matrix and bias when they equal the
// word embeddings and cls.predictions.bias (the tie BLIP uses), and warns otherwise.
func (m *Model) checkTiedHead(records map[string]checkpoint.TensorRecord, used map[string]bool,
	mapper *recordMapper, rep *LoadReport) {
	if m.TextDecoder == nil {
		return
	}
	for stored, tied := range map[string]*torch.Tensor{
		"text_decoder.cls.predictions.decoder.weight": *m.TextDecoder.Cls.words,
		"text_decoder.cls.predictions.decoder.bias":   m.TextDecoder.Cls.Predictions.Bias,
	} {
		r, ok := records[stored]
		if !ok {
			continue
		}
		used[stored] = true
		if tied == nil {
			continue
		}
		diff, err := mapper.maxAbsDiff(r, tied)
		if err != nil {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("%s could not be compared with its tied tensor: %v", stored, err))
			continue
		}
		if diff != 0 {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("%s differs from the tied tensor it should equal (max |diff| %g); the tied one is used", stored, diff))
		}
	}
}

// maxAbsDiff compares a record's values with a tensor that should hold the same ones.
func (rm *recordMapper) maxAbsDiff(r checkpoint.TensorRecord, ref *torch.Tensor) (float64, error) {
	t, err := rm.view(r)
	if err != nil {
		return 0, err
	}
	sc := torch.NewScope()
	defer sc.Close()
	return sc.Track(t).ToDType(torch.Float32).Sub(ref).Abs().Amax(false).Item()
}

// recordMapper builds tensors over checkpoint records, mapping each file once.
type recordMapper struct {
	maps map[string]*torch.Mapping
}

func newRecordMapper() *recordMapper { return &recordMapper{maps: map[string]*torch.Mapping{}} }

// close drops the mapper's handles; tensors keep their pages mapped.
func (rm *recordMapper) close() {
	for _, mp := range rm.maps {
		mp.Close()
	}
}

// view returns an unscoped tensor over r's bytes: a view of the mapped file, or a copy
// when the writer did not align the tensor to its element size.
func (rm *recordMapper) view(r checkpoint.TensorRecord) (*torch.Tensor, error) {
	dt, err := torchDType(r.DType)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", r.Path, r.Name, err)
	}
	if r.Offset%int64(r.DType.Size()) != 0 {
		data, err := readRecord(r)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", r.Path, r.Name, err)
		}
		return torch.FromBytes(data, dt, r.Shape...), nil
	}
	mp, ok := rm.maps[r.Path]
	if !ok {
		if mp, err = torch.MapFile(r.Path); err != nil {
			return nil, err
		}
		rm.maps[r.Path] = mp
	}
	t := mp.Tensor(r.Offset, dt, r.Shape, r.Strides)
	if err := t.Err(); err != nil {
		return nil, fmt.Errorf("%s: %s: %w", r.Path, r.Name, err)
	}
	return t, nil
}

func torchDType(d checkpoint.DType) (torch.DType, error) {
	switch d {
	case checkpoint.F32:
		return torch.Float32, nil
	case checkpoint.F64:
		return torch.Float64, nil
	case checkpoint.F16:
		return torch.Float16, nil
	case checkpoint.BF16:
		return torch.BFloat16, nil
	case checkpoint.I64:
		return torch.Int64, nil
	case checkpoint.I32:
		return torch.Int32, nil
	case checkpoint.I16:
		return torch.Int16, nil
	case checkpoint.I8:
		return torch.Int8, nil
	case checkpoint.U8:
		return torch.Uint8, nil
	case checkpoint.Bool:
		return torch.Bool, nil
	}
	return torch.Invalid, fmt.Errorf("unsupported dtype %v", d)
}

// WeightsKey is informational: the dict key original checkpoints keep weights under.
func (r *LoadReport) WeightsKey() string { return r.weightsKey }
