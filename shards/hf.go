package shards

import (
	"bytes"
	"encoding/json"

	"github.com/apache/arrow-go/v18/arrow"
)

// hfMetadataKey is the key/value metadata entry HF datasets reads its features from:
// {"info": {"features": {...}}}. datasets.load_dataset("parquet", ...) takes a column's
// feature from it when the feature's Arrow type equals the column's (nullability
// included), and infers one from the Arrow type otherwise; so with it the image column
// decodes to a PIL image instead of a {bytes, path} dict.
const hfMetadataKey = "huggingface"

// hfFeatures writes the features of the cleaned columns of schema, in schema order, as
// HF datasets serialises them: {"_type": "Value", "dtype": ...} for scalars, {"_type":
// "Image"} for the image struct, and a one-element JSON list for a list of structs (the
// form every datasets version reads; a "Sequence" of a struct would mean a struct of
// lists there). Columns it has no feature for are left to HF's inference.
func hfFeatures(schema *arrow.Schema) string {
	var buf bytes.Buffer
	buf.WriteString(`{"info":{"features":{`)
	n := 0
	for _, f := range schema.Fields() {
		feature := hfFeature(f.Name, f.Type)
		if feature == nil {
			continue
		}
		if n > 0 {
			buf.WriteByte(',')
		}
		n++
		name, _ := json.Marshal(f.Name)
		buf.Write(name)
		buf.WriteByte(':')
		buf.Write(feature)
	}
	buf.WriteString(`}}}`)
	return buf.String()
}

func hfFeature(name string, t arrow.DataType) []byte {
	switch {
	case name == "image" && arrow.TypeEqual(t, imageStruct):
		return []byte(`{"_type":"Image"}`)
	case arrow.TypeEqual(t, captionList):
		var buf bytes.Buffer
		buf.WriteString(`[{`)
		for i, f := range captionStruct.Fields() {
			if i > 0 {
				buf.WriteByte(',')
			}
			buf.WriteString(`"` + f.Name + `":`)
			buf.Write(hfFeature(f.Name, f.Type))
		}
		buf.WriteString(`}]`)
		return buf.Bytes()
	}
	if dtype, ok := hfValueTypes[t.ID()]; ok {
		return []byte(`{"dtype":"` + dtype + `","_type":"Value"}`)
	}
	return nil
}

// hfValueTypes are the HF dtypes of the scalar types the cleaned columns use.
var hfValueTypes = map[arrow.Type]string{
	arrow.STRING:  "string",
	arrow.BINARY:  "binary",
	arrow.INT32:   "int32",
	arrow.FLOAT32: "float32",
}
