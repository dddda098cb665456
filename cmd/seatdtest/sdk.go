package seatdtest

import (
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// sdkDir is where .ci/run installs Polar's TypeScript SDK (npm ci), for the
// webhook verifier and for these checks.
const sdkDir = "webhook/testdata/node/node_modules/@polar-sh/sdk/dist"

var (
	sdkOnce  sync.Once
	sdkTypes map[string][]sdkProperty // interface name → its properties
	sdkErr   string
)

type sdkProperty struct{ name, typ string }

var (
	sdkModels    = regexp.MustCompile(`from "\.\./(models-[^"]+)\.mjs"`)
	sdkInterface = regexp.MustCompile(`(?m)^interface (\w+) \{\n((?:.*\n)*?)\}`)
	sdkField     = regexp.MustCompile(`(?m)^  (\w+)\??: (.+);$`)
	sdkTypeName  = regexp.MustCompile(`^\(?(\w+)(?: \| null)?\)?(\[\])?$`)
)

// loadSDK reads the interfaces of the SDK's 2026-10 models.
func loadSDK() {
	_, file, _, _ := runtime.Caller(0)
	dist := filepath.Join(filepath.Dir(file), "..", "..", sdkDir)
	index, err := os.ReadFile(filepath.Join(dist, "2026-10", "index.d.mts"))
	if err != nil {
		sdkErr = "Polar's SDK is not installed"
		return
	}
	m := sdkModels.FindSubmatch(index)
	if m == nil {
		sdkErr = "the SDK's 2026-10 index names no models file"
		return
	}
	models, err := os.ReadFile(filepath.Join(dist, string(m[1])+".d.mts"))
	if err != nil {
		sdkErr = "the SDK's models: " + err.Error()
		return
	}
	sdkTypes = map[string][]sdkProperty{}
	for _, im := range sdkInterface.FindAllStringSubmatch(string(models), -1) {
		for _, f := range sdkField.FindAllStringSubmatch(im[2], -1) {
			sdkTypes[im[1]] = append(sdkTypes[im[1]], sdkProperty{f[1], f[2]})
		}
	}
}

// CheckSDKShape fails the test when v (a decoded JSON object) lacks a
// property, optional ones included, of the interface typ of Polar's
// TypeScript SDK 1.0.1 (API version 2026-10), or of the SDK interfaces its
// non-null properties hold, recursively: what a Polar client reads is
// there. Without the SDK (npm ci in webhook/testdata/node) the test is
// skipped; under CI=true it fails.
func CheckSDKShape(t testing.TB, typ string, v any) {
	t.Helper()
	sdkOnce.Do(loadSDK)
	if sdkErr != "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s (CI must run npm ci in webhook/testdata/node)", sdkErr)
		}
		t.Skipf("%s; run `npm ci` in webhook/testdata/node to check responses against its types", sdkErr)
	}
	checkShape(t, typ, typ, v)
}

func checkShape(t testing.TB, path, typ string, v any) {
	t.Helper()
	props, ok := sdkTypes[typ]
	if !ok {
		t.Fatalf("%s: the SDK has no interface %s", path, typ)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		t.Errorf("%s: %T, want an object (%s)", path, v, typ)
		return
	}
	for _, p := range props {
		val, ok := obj[p.name]
		if !ok {
			t.Errorf("%s: no %s (SDK type %s)", path, p.name, p.typ)
			continue
		}
		m := sdkTypeName.FindStringSubmatch(strings.TrimSpace(p.typ))
		if m == nil || val == nil {
			continue
		}
		if _, nested := sdkTypes[m[1]]; !nested {
			continue
		}
		if m[2] == "" {
			checkShape(t, path+"."+p.name, m[1], val)
			continue
		}
		list, _ := val.([]any)
		for i, item := range list {
			checkShape(t, path+"."+p.name+"["+strconv.Itoa(i)+"]", m[1], item)
		}
	}
}
