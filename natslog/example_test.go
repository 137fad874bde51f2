package natslog_test

import (
	"context"
	"log"
	"net/http"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fanout-go/fanout"
	"github.com/fanout-go/fanout/natslog"
)

// Every server process that runs this serves the same stream of events
// for the session "doc-42": one order, resume on any of them.
func ExampleNew() {
	nc, err := nats.Connect("nats://127.0.0.1:4222", nats.MaxReconnects(-1))
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	store, err := natslog.New(context.Background(), js, natslog.Options{}) // one per process
	if err != nil {
		log.Fatal(err)
	}
	s, err := fanout.NewSession("doc-42", fanout.WithLog(store.Log("doc-42")))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	http.Handle("/doc-42", s)
	log.Fatal(http.ListenAndServe("127.0.0.1:8080", nil))
}
