// Package wire encodes and decodes the messages of the fanout wire protocol
// (see PROTOCOL.md at the module root).
//
// Server messages are built with append-style encoders so that an event is
// encoded once, at publish, into bytes every connection can send as they are.
// Client messages are decoded strictly: anything malformed is an error that
// the server turns into close code 4000.
package wire
