# Multi-platform builds with BuildKit:
#   docker buildx bake                       # edgecl:latest for linux/amd64 and linux/arm64
#   docker buildx bake --push                # the same, pushed (set REGISTRY)
#   docker buildx bake jetson                # edgecl:jetson (build on the Jetson or via QEMU)
#   TAG=0.1.0 L4T_RELEASE=r36.2 docker buildx bake all
# A multi-platform result cannot be loaded into a local engine; for the machine's own
# platform only: docker buildx bake --set edgecl.platform=linux/arm64 --load

variable "REGISTRY" {
  # e.g. "ghcr.io/you/" (with the trailing slash); empty: local names.
  default = ""
}

variable "TAG" {
  default = "latest"
}

variable "L4T_RELEASE" {
  # The Jetson's L4T release (`head -1 /etc/nv_tegra_release`): r36.2 or r36.4.
  default = "r36.4"
}

group "default" {
  targets = ["edgecl"]
}

group "all" {
  targets = ["edgecl", "jetson"]
}

target "edgecl" {
  context    = "."
  dockerfile = "Dockerfile"
  target     = "runtime"
  platforms  = ["linux/amd64", "linux/arm64"]
  tags = ["${REGISTRY}edgecl:${TAG}"]
}

target "jetson" {
  context    = "."
  dockerfile = "Dockerfile.jetson"
  target     = "runtime"
  platforms  = ["linux/arm64"]
  args = {
    L4T_RELEASE = L4T_RELEASE
  }
  tags = ["${REGISTRY}edgecl:${TAG}-jetson-${L4T_RELEASE}"]
}
