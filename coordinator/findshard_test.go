package coordinator

import (
	"testing"

	"github.com/capfilt/capfilt/pipeline"
	"github.com/capfilt/capfilt/shards"
)

// A shard is named to retry by its id, its input URL, its stem, or the output file it
// writes (Parquet, or a WebDataset tar).
func TestFindShardByEveryNameAUserSees(t *testing.T) {
	u, err := shards.ParseURL("s3://bucket/laion/00042.tar")
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]pipeline.ShardState{"00042": {Shard: pipeline.ShardRef{ID: "00042", URL: u}}}
	for _, name := range []string{"00042", "s3://bucket/laion/00042.tar", "00042.parquet", "00042.tar"} {
		if st, ok := findShard(states, name); !ok || st.Shard.ID != "00042" {
			t.Errorf("%q: found %v (%+v)", name, ok, st.Shard)
		}
	}
	if _, ok := findShard(states, "00043.parquet"); ok {
		t.Error("00043.parquet found a shard")
	}
}
