package main_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestGPUCheckScript runs scripts/gpu-check.sh end to end where there is no
// GPU: the server, a real agent reading NVML through go-nvml, and the
// script's independent reader all load a stand-in libnvidia-ml
// (testdata/fakenvml.c) whose GPUs draw a power wave in wall-clock time.
// The script must find the GPUs, compare the energy the server stored with
// the counter read independently, pass when they agree and fail when the
// agent's counter reads 5% high.
func TestGPUCheckScript(t *testing.T) {
	if os.Getenv("CGO_ENABLED") == "0" {
		t.Skip("the agent reads NVML through cgo")
	}
	if _, err := exec.LookPath("python3"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("python3 is missing under CI=true: the script's independent reader needs it")
		}
		t.Skip("python3 is missing: the script's independent reader needs it")
	}
	cc, err := exec.Command("go", "env", "CC").Output()
	if err != nil {
		t.Fatal(err)
	}
	lib := t.TempDir()
	if out, err := exec.Command(strings.TrimSpace(string(cc)), "-shared", "-fPIC", "-O2", "-o", filepath.Join(lib, "libnvidia-ml.so.1"), "testdata/fakenvml.c", "-lm").CombinedOutput(); err != nil {
		t.Fatalf("building the stand-in NVML: %v\n%s", err, out)
	}
	bin := binary(t)
	script, err := filepath.Abs("../../scripts/gpu-check.sh")
	if err != nil {
		t.Fatal(err)
	}
	short := exec.Command(script)
	short.Env = append(os.Environ(), "NEOCLOUD_BIN="+bin, "LOAD_S=5")
	if out, err := short.CombinedOutput(); err == nil || !strings.Contains(string(out), "LOAD_S=5") {
		t.Errorf("a 5 s load: exit %v, want a refusal naming LOAD_S:\n%s", err, out)
	}
	for _, tc := range []struct {
		name  string
		scale float64 // the agent's counter reads this many times the card's
		ok    bool
		diff  float64 // stored vs counter, %
		// search: the script finds the library in NVML_DIRS (as in a
		// container that mounts the driver's folder) rather than through
		// LD_LIBRARY_PATH.
		search bool
	}{
		{"counters agree", 1, true, 0, true},
		{"agent counter 5% high", 1.05, false, 5, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// The agent runs through a wrapper that gives it the skewed
			// counter; the script's own reader does not get it.
			wrapper := filepath.Join(t.TempDir(), "neocloud")
			if err := os.WriteFile(wrapper, []byte("#!/bin/sh\nNEOCLOUD_FAKE_NVML_SCALE="+strconv.FormatFloat(tc.scale, 'f', -1, 64)+" exec "+bin+" \"$@\"\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(script)
			cmd.Env = append(os.Environ(), "NEOCLOUD_BIN="+wrapper, "NEOCLOUD_FAKE_NVML_GPUS=2", "LOAD_S=12")
			if tc.search {
				cmd.Env = append(cmd.Env, "LD_LIBRARY_PATH=", "NVML_DIRS="+filepath.Join(lib, "none")+" "+lib)
			} else {
				cmd.Env = append(cmd.Env, "LD_LIBRARY_PATH="+lib)
			}
			out, err := cmd.CombinedOutput()
			text := string(out)
			if found := strings.Contains(text, "libnvidia-ml.so.1 from "+lib+"\n"); found != tc.search {
				t.Errorf("the script said it took the library from %s: %v, want %v:\n%s", lib, found, tc.search, text)
			}
			if tc.ok != (err == nil) {
				t.Fatalf("exit %v, want success %v:\n%s", err, tc.ok, text)
			}
			if !tc.ok {
				if ee, isExit := err.(*exec.ExitError); !isExit || ee.ExitCode() != 1 || !strings.Contains(text, "gpu-check: FAIL") {
					t.Fatalf("want exit 1 with FAIL, got %v:\n%s", err, text)
				}
			}
			for _, want := range []string{
				"agent found gpu 0: NVIDIA H100 80GB HBM3 (fake) GPU-fa4e0000-0000-0000-0000-000000000000",
				"agent found gpu 1: NVIDIA H100 80GB HBM3 (fake) GPU-fa4e0000-0000-0000-0000-000000000001",
				"nvml found gpu 1: NVIDIA H100 80GB HBM3 (fake) GPU-fa4e0000-0000-0000-0000-000000000001",
				"driver 550.0-fake",
			} {
				if !strings.Contains(text, want) {
					t.Errorf("output lacks %q:\n%s", want, text)
				}
			}
			m := regexp.MustCompile(`stored vs counter\s+([-+][0-9.]+) %`).FindStringSubmatch(text)
			if m == nil {
				t.Fatalf("no comparison in the output:\n%s", text)
			}
			diff, _ := strconv.ParseFloat(m[1], 64)
			if diff < tc.diff-0.5 || diff > tc.diff+0.5 {
				t.Errorf("stored vs counter %+.3f%%, want %+.1f%% ± 0.5:\n%s", diff, tc.diff, text)
			}
			// Two GPUs drawing 400 W on average, over about 11 s between
			// reports: the stored energy is in joules, not mJ or one GPU's.
			e := regexp.MustCompile(`server-stored energy\s+([0-9]+) J`).FindStringSubmatch(text)
			iv := regexp.MustCompile(`interval\s+([0-9.]+) s`).FindStringSubmatch(text)
			if e == nil || iv == nil {
				t.Fatalf("no stored energy or interval in the output:\n%s", text)
			}
			joules, _ := strconv.ParseFloat(e[1], 64)
			secs, _ := strconv.ParseFloat(iv[1], 64)
			if w := joules / secs / 2 / tc.scale; w < 400-250 || w > 400+250 {
				t.Errorf("stored %.0f J over %.1f s: %.0f W a GPU, outside the stand-in's 150–650 W", joules, secs, w)
			}
		})
	}
}
