// Package deploy holds no code: its tests prove the deployment files in
// this directory (compose, Kubernetes, the NATS cluster configuration,
// systemd units, the Dockerfile) without a container engine. They parse
// every manifest into its real type, check that every variable the files
// set is one seatd reads and that every setting seatd needs is set, and
// run the NATS cluster configuration with real nats-server processes.
//
// It is a module of its own so that the Kubernetes, kustomize and compose
// libraries stay out of seatd's go.mod: cd deploy && go test ./...
package deploy
