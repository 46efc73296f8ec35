package main

import (
	"github.com/spf13/pflag"

	"github.com/capfilt/capfilt/shards"
)

// storeOptions are the S3 settings (local paths need none).
type storeOptions struct {
	Endpoint, Region string
	PathStyle        bool
}

func (o *storeOptions) AddFlags(f *pflag.FlagSet) {
	f.StringVar(&o.Endpoint, "s3-endpoint", "", "S3-compatible endpoint, e.g. http://minio:9000 (empty: AWS)")
	f.StringVar(&o.Region, "s3-region", "", "S3 region (default: from the AWS environment, else us-east-1)")
	f.BoolVar(&o.PathStyle, "s3-path-style", false, "address buckets as endpoint/bucket (MinIO and most self-hosted stores)")
}

func (o *storeOptions) open() shards.Store {
	return shards.OpenStore(shards.StoreConfig{S3Endpoint: o.Endpoint, S3Region: o.Region, S3PathStyle: o.PathStyle})
}
