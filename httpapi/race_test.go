//go:build race

package httpapi_test

// raceEnabled says the tests run under the race detector, where sync.Pool
// drops some of what is put back (so pooled objects are made again).
const raceEnabled = true
