package workers

import (
	"os"
	"path/filepath"

	"github.com/capfilt/capfilt/shards"
)

// localTempPrefix is how shards.LocalStore names a file it has not published yet (its
// unexported tempPrefix). A worker killed mid-shard cannot abort its writer, so its
// temporary files stay behind; the attempt that reruns the shard removes them.
//
// It duplicates a shards detail because the Store interface has no way to list or clean
// unpublished writes; shards exporting the prefix (or a Store method that removes stale
// writes under a name) would remove the duplicate.
const localTempPrefix = ".capfilt-tmp-"

// removeStaleTemps deletes the unpublished local files of earlier attempts at these
// outputs. S3 needs nothing here: an object appears only when its upload completes, and
// an abandoned multipart upload is invisible (a bucket lifecycle rule reclaims it).
func removeStaleTemps(outputs ...shards.URL) {
	for _, u := range outputs {
		if u.Scheme != shards.SchemeFile {
			continue
		}
		matches, _ := filepath.Glob(filepath.Join(filepath.Dir(u.Path), localTempPrefix+globEscape(filepath.Base(u.Path))+"-*"))
		for _, m := range matches {
			os.Remove(m)
		}
	}
}

// globEscape quotes the characters filepath.Match treats specially.
func globEscape(s string) string {
	out := make([]rune, 0, len(s))
	for _, r := range s {
		switch r {
		case '*', '?', '[', '\\':
			out = append(out, '\\')
		}
		out = append(out, r)
	}
	return string(out)
}
