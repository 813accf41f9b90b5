// Package runners is bridge's go-plugin contract: the handshake, the plugin
// map, the gRPC plugin type, the runner-spec parser and the table of
// languages. Adding a language is one row in Languages plus one shim folder.
package runners

import (
	"context"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	bridgev1 "bridge/proto/bridge/v1"
)

// PluginName is the key of the runner in the go-plugin plugin map.
const PluginName = "runner"

// Handshake is shared by bridge and every runner. The cookie is not a secret:
// it only stops a user from running a shim by hand and wondering why it
// prints a socket path and waits.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "BRIDGE_PLUGIN",
	MagicCookieValue: "runner-v1",
}

// PluginMap is the plugin set bridge dispenses from every runner.
func PluginMap() map[string]plugin.Plugin {
	return map[string]plugin.Plugin{PluginName: &RunnerPlugin{}}
}

// RunnerPlugin adapts bridge.v1.Runner to go-plugin. On the host side it
// hands out a RunnerClient; a runner written in Go sets Impl and serves it.
type RunnerPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl bridgev1.RunnerServer
}

// GRPCServer registers Impl on the plugin's gRPC server.
func (p *RunnerPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	bridgev1.RegisterRunnerServer(s, p.Impl)
	return nil
}

// GRPCClient returns the generated client for the plugin's connection.
func (p *RunnerPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (interface{}, error) {
	return bridgev1.NewRunnerClient(c), nil
}

var _ plugin.GRPCPlugin = (*RunnerPlugin)(nil)
