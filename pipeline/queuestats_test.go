package pipeline_test

import (
	"context"
	"testing"
	"time"

	"github.com/capfilt/capfilt/internal/testutil/pipelinetest"
	"github.com/capfilt/capfilt/pipeline"
)

// Stats reads what the stream and the consumer hold, and changes nothing.
func TestQueueStatsCountJobsByRunDeliveryAndRedelivery(t *testing.T) {
	n := pipelinetest.StartNATS(t)
	q := n.EnsureQueue(t)
	ctx := context.Background()
	st, err := q.Stats(ctx)
	if err != nil || st.Jobs != 0 || len(st.JobsByRun) != 0 || st.Undelivered != 0 || st.InFlight != 0 {
		t.Fatalf("an empty queue: %+v (%v)", st, err)
	}
	if _, err := q.PublishJobs(ctx, []pipeline.Job{testJob(t, "a", "00000"), testJob(t, "a", "00001"), testJob(t, "b", "00000")}); err != nil {
		t.Fatal(err)
	}
	st, err = q.Stats(ctx)
	if err != nil || st.Jobs != 3 || st.JobsByRun["a"] != 2 || st.JobsByRun["b"] != 1 || st.Undelivered != 3 || st.InFlight != 0 {
		t.Fatalf("three queued jobs: %+v (%v)", st, err)
	}
	d, err := q.Fetch(ctx, time.Second)
	if err != nil || d == nil {
		t.Fatal(err)
	}
	st, _ = q.Stats(ctx)
	if st.Jobs != 3 || st.Undelivered != 2 || st.InFlight != 1 || st.Redelivered != 0 {
		t.Fatalf("one delivered: %+v", st)
	}
	if err := d.Nak(); err != nil {
		t.Fatal(err)
	}
	var again *pipeline.Delivery
	for again == nil || again.Attempt() < 2 {
		if again, err = q.Fetch(ctx, time.Second); err != nil {
			t.Fatal(err)
		}
		if again != nil && again.Attempt() < 2 {
			again.Nak()
		}
	}
	st, _ = q.Stats(ctx)
	if st.Redelivered < 1 || st.InFlight < 1 {
		t.Fatalf("a job delivered twice and unacknowledged: %+v", st)
	}
	if err := again.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, _ = q.Stats(ctx)
		if st.Jobs == 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st.Jobs != 2 {
		t.Fatalf("after an ack: %+v", st)
	}
}
