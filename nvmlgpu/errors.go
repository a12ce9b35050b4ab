package nvmlgpu

import "errors"

// ErrNoLibrary says libnvidia-ml is not on this node (or this build cannot
// load it).
var ErrNoLibrary = errors.New("libnvidia-ml.so.1 (NVIDIA's management library) was not found on this node: install the NVIDIA driver, or run the agent with --simulate-gpus N")
