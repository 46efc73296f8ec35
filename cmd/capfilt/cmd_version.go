package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/capfilt/capfilt/torch"
)

// version and build are set at build time (-ldflags "-X main.version=... -X
// main.build=..."); without them the VCS revision the binary was built from is used.
var (
	version = ""
	build   = ""
)

// capfiltBuild is the build (VCS revision) the outputs record: the ldflags' main.build,
// else the revision Go stamped into the binary, else "unknown".
func capfiltBuild() string {
	if build != "" {
		return build
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && s.Value != "" {
				return s.Value[:min(12, len(s.Value))]
			}
		}
	}
	return "unknown"
}

func capfiltVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		rev, dirty := "", false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if rev != "" {
			if dirty {
				rev += "-dirty"
			}
			return "dev-" + rev
		}
	}
	return "dev"
}

// deviceInfo is one device the binary can run on.
type deviceInfo struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	MemoryTotal int64  `json:"memory_total_bytes,omitempty"`
	MemoryFree  int64  `json:"memory_free_bytes,omitempty"`
}

type versionInfo struct {
	Capfilt     string       `json:"capfilt"`
	Build       string       `json:"build"`
	Go          string       `json:"go"`
	Platform    string       `json:"platform"`
	Libtorch    string       `json:"libtorch"`
	Shim        string       `json:"shim"`
	CUDACompile bool         `json:"shim_cuda"`
	NCCL        bool         `json:"shim_nccl"`
	BLAS        torch.BLAS   `json:"blas"`
	Threads     int          `json:"threads"`
	BLASThreads int          `json:"blas_threads"`
	BulkThreads int          `json:"bulk_threads"`
	OMPWait     string       `json:"omp_wait_policy"`
	Devices     []deviceInfo `json:"devices"`
}

func collectVersion() (versionInfo, error) {
	info := versionInfo{
		Capfilt:     capfiltVersion(),
		Build:       capfiltBuild(),
		Go:          runtime.Version(),
		Platform:    runtime.GOOS + "/" + runtime.GOARCH,
		Libtorch:    torch.Version(),
		Shim:        torch.ShimPath(),
		CUDACompile: torch.CUDACompiled(),
		NCCL:        torch.NCCLCompiled(),
		Threads:     torch.NumThreads(),
		BLASThreads: torch.BLASThreads(),
		BulkThreads: torch.BulkThreads(),
		OMPWait:     os.Getenv("OMP_WAIT_POLICY"),
	}
	blas, err := torch.BLASInfo()
	if err != nil {
		return info, err
	}
	info.BLAS = blas
	info.Devices = append(info.Devices, deviceInfo{Name: "cpu", Description: fmt.Sprintf("%d CPUs", runtime.NumCPU())})
	if torch.CUDAAvailable() {
		for i := 0; i < torch.CUDADeviceCount(); i++ {
			d := deviceInfo{Name: torch.CUDA(i).String()}
			if name, err := torch.CUDADeviceName(i); err == nil {
				d.Description = name
			} else {
				d.Description = err.Error()
			}
			if m, err := torch.CUDAMemoryStats(i); err == nil {
				d.MemoryTotal, d.MemoryFree = m.Total, m.Free
			}
			info.Devices = append(info.Devices, d)
		}
	}
	return info, nil
}

func newVersionCommand(a *app) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the versions of capfilt, Go, libtorch and the BLAS, and the devices seen",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			info, err := collectVersion()
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(info)
			}
			a.printf("capfilt   %s (build %s)\n", info.Capfilt, info.Build)
			a.printf("go        %s %s\n", info.Go, info.Platform)
			shim := info.Shim
			if info.CUDACompile {
				shim += " (with CUDA)"
			} else {
				shim += " (CPU only)"
			}
			dist := "c10d with Gloo"
			if info.NCCL {
				dist += " and NCCL"
			}
			a.printf("libtorch  %s via %s; %s\n", info.Libtorch, shim, dist)
			a.printf("blas      %s\n", info.BLAS)
			a.printf("threads   %d per op (libtorch), %d for ops over 2^18 elements, %d for matmuls (BLAS); OpenMP wait policy %s\n",
				info.Threads, info.BulkThreads, info.BLASThreads, cmp.Or(info.OMPWait, "unset (active)"))
			for i, d := range info.Devices {
				label := "devices"
				if i > 0 {
					label = ""
				}
				line := fmt.Sprintf("%-9s %-8s %s", label, d.Name, d.Description)
				if d.MemoryTotal > 0 {
					line += fmt.Sprintf(", %.1f GiB total, %.1f GiB free", float64(d.MemoryTotal)/(1<<30), float64(d.MemoryFree)/(1<<30))
				}
				a.printf("%s\n", line)
			}
			if !torch.CUDAAvailable() {
				why := "no CUDA device visible"
				if !info.CUDACompile {
					why = "shim built without CUDA"
				}
				a.printf("%-9s %-8s %s\n", "", "cuda", "none ("+why+")")
			}
			return nil
		},
	}
	addJSONFlag(cmd.Flags(), &asJSON)
	return cmd
}
