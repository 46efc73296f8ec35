// Package spec holds what a run fixes, typed: the captioner's Generation settings, the
// filter's AcceptRule and the Queue settings (ack wait, attempts, backoff). Each has its
// defaults here and only here, a Validate that names every setting out of range as the
// command line and capfilt.yaml name it, and a JSON form that run settings, manifests and
// output metadata record. It imports only the standard library, so the CLI, the
// coordinator, the workers and the model code can all share it.
package spec
