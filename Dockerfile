# syntax=docker/dockerfile:1
#
# capfilt's image: the Go binary and the libtorch shim, built with the scripts `make setup`
# uses, on the libtorch the image runs with.
#
#   docker build -t capfilt:cuda .                          # CUDA: a PyTorch image's libtorch
#   docker build -t capfilt:cpu --build-arg VARIANT=cpu .   # CPU: Debian's libtorch + OpenBLAS
#
# BuildKit (the default builder since Docker 23) builds only the stages of the chosen
# variant; the legacy builder would build both.
#
# The CUDA variant compiles the shim in the PyTorch -devel image (it has the CUDA toolkit's
# headers, which libtorch's CUDA headers include) and runs it in the -runtime image of the
# same tag, whose Python package holds the same libtorch at the same path.

ARG VARIANT=cuda
ARG GO_IMAGE=golang:1.26-bookworm
ARG PYTORCH_TAG=2.5.1-cuda12.4-cudnn9
ARG DEBIAN_IMAGE=debian:bookworm-slim
ARG VERSION=dev
ARG BUILD=unknown

# Only its Go toolchain is used: a static tree that runs on Debian and Ubuntu alike.
FROM ${GO_IMAGE} AS go

# ---- CPU build: exactly `make setup` (Debian's libtorch-dev 1.13, OpenBLAS checked) ----
FROM ${DEBIAN_IMAGE} AS build-cpu
ARG VERSION
ARG BUILD
COPY --from=go /usr/local/go /usr/local/go
ENV PATH=/usr/local/go/bin:$PATH GOTOOLCHAIN=local
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/root/go/pkg/mod go mod download
COPY . .
# setup.sh installs libtorch-dev and OpenBLAS, fails unless libtorch loads OpenBLAS, builds
# the shim (scripts/build-torch-shim.sh) and bin/capfilt. The second make relinks the
# binary stripped and stamped with VERSION and BUILD (.git is not in the build context:
# docker build --build-arg VERSION=$(git describe --always) --build-arg BUILD=$(git rev-parse --short=12 HEAD)).
RUN --mount=type=cache,target=/root/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    scripts/setup.sh \
 && make build-go VERSION="${VERSION}" LDFLAGS="-s -w -X main.version=${VERSION} -X main.build=${BUILD}"

# ---- CUDA build: the shim against the libtorch inside PyTorch's Python package ---------
FROM pytorch/pytorch:${PYTORCH_TAG}-devel AS build-cuda
ARG VERSION
ARG BUILD
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends g++ make git ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=go /usr/local/go /usr/local/go
ENV PATH=/usr/local/go/bin:$PATH GOTOOLCHAIN=local
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/root/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/root/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    LIBTORCH="$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')" \
    CUDA_HOME=/usr/local/cuda scripts/build-torch-shim.sh \
 && make build-go VERSION="${VERSION}" LDFLAGS="-s -w -X main.version=${VERSION} -X main.build=${BUILD}"

# ---- CPU runtime -----------------------------------------------------------------------
FROM ${DEBIAN_IMAGE} AS runtime-cpu
# libtorch1.13 is what the shim links (libtorch-dev adds only headers and symlinks);
# without OpenBLAS libtorch's matmuls run ~14x slower on Debian's reference BLAS.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libtorch1.13 libopenblas0-pthread ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build-cpu /src/bin/capfilt /src/build/libcapfilt_torch.so /opt/capfilt/bin/
# The check setup.sh makes, on the libraries this image carries.
RUN /opt/capfilt/bin/capfilt version --json | grep -q '"library": ".*openblas'

# ---- CUDA runtime ----------------------------------------------------------------------
FROM pytorch/pytorch:${PYTORCH_TAG}-runtime AS runtime-cuda
COPY --from=build-cuda /src/bin/capfilt /src/build/libcapfilt_torch.so /opt/capfilt/bin/
# The shim needs libcudart by name before libtorch_cuda's own RUNPATH is searched, and this
# image has no /usr/local/cuda: register torch's and the nvidia-* wheels' library folders.
RUN d="$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')" \
 && ls -d "$d/lib" "$d"/../nvidia/*/lib > /etc/ld.so.conf.d/capfilt-torch.conf \
 && ldconfig \
 && /opt/capfilt/bin/capfilt version

# ---- the image -------------------------------------------------------------------------
FROM runtime-${VARIANT}
# The binary finds the shim beside itself ($ORIGIN in its RUNPATH).
ENV PATH=/opt/capfilt/bin:$PATH
COPY deploy/healthcheck.sh /usr/local/bin/capfilt-healthcheck
# Named volumes mounted on these folders start with their owner, so the user can write.
RUN useradd --create-home --uid 10001 --user-group capfilt \
 && mkdir -p /models /data /checkpoints \
 && chown capfilt:capfilt /models /data /checkpoints
USER capfilt
WORKDIR /home/capfilt
# Checks the metrics server when CAPFILT_METRICS_ADDR is set (capfilt worker); other
# commands serve nothing and count as healthy.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 CMD ["capfilt-healthcheck"]
ENTRYPOINT ["capfilt"]
CMD ["--help"]
