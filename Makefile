.PHONY: build test lint bench bench-agents gpu-check server scale demo console-png
build:
	go build -o bin/neocloud ./cmd/neocloud
test:
	go test -race -timeout 30m ./...
lint:
	gofmt -l . | (! grep .) && go vet ./...
bench:
	go test -run '^$$' -bench . -benchtime 2000x ./httpapi/
	go test -run '^$$' -bench . -benchtime 300x ./placement/
	go run ./cmd/neocloud bench placement
bench-agents:
	go run ./cmd/neocloud bench heartbeats --agents 25000
	go run ./cmd/neocloud bench heartbeats --agents 25000 --clients 16 --pipeline 16
	go run ./cmd/neocloud bench heartbeats --agents 25000 --clients 256 --relays 1 --relay-conns 2
gpu-check: build
	NEOCLOUD_BIN=bin/neocloud scripts/gpu-check.sh
server:
	go run ./cmd/neocloud server
scale:
	NEOCLOUD_SCALE=1 go test -timeout 30m -run Scale -count=1 ./...
demo:
	go run ./cmd/neocloud demo
console-png:
	go test ./demo -run 'TestConsoleInABrowser|TestTenantPortalInABrowser' -count=1 -update
