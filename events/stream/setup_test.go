package stream

import (
	"context"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/seatd/seatd/events"
)

// WaitStreams waits for a server that is not there yet, says what it
// waits for, and sets the streams up once it comes.
func TestWaitStreamsWaitsForTheServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	nc, err := Connect("nats://127.0.0.1:"+strconv.Itoa(port), "wait-test")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var waited []string
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		done <- WaitStreams(ctx, nc, js, StreamConfig{}, WaitOptions{MaxDelay: 200 * time.Millisecond, Waiting: func(w string) {
			mu.Lock()
			waited = append(waited, w)
			mu.Unlock()
		}})
	}()
	time.Sleep(time.Second) // several attempts against nothing
	select {
	case err := <-done:
		t.Fatalf("WaitStreams returned before the server existed: %v", err)
	default:
	}
	srv, err := StartServer(ServerConfig{Port: port, StoreDir: t.TempDir(), Fsync: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	if err := <-done; err != nil {
		t.Fatalf("WaitStreams: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(waited) < 2 || waited[0] != "a NATS connection" || waited[len(waited)-1] != "" {
		t.Errorf("Waiting was told %q; want \"a NATS connection\" first and \"\" once done", waited)
	}
	for _, s := range []string{events.RequestsStream, events.MailStream, events.SeatEventsStream, events.DeadLetterStream} {
		if _, err := js.Stream(context.Background(), s); err != nil {
			t.Errorf("stream %s: %v", s, err)
		}
	}
}

// Three replicas on a server that is not clustered can never work: that
// is returned at once, with what to do, instead of waiting forever.
func TestWaitStreamsReplicasWithoutCluster(t *testing.T) {
	nc, js := serverConn(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	err := WaitStreams(ctx, nc, js, StreamConfig{Replicas: 3}, WaitOptions{})
	if err == nil || !strings.Contains(err.Error(), "SEATD_NATS_REPLICAS=3") {
		t.Fatalf("err %v; want one naming SEATD_NATS_REPLICAS=3", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %s to give up on a configuration that cannot work", d)
	}
}

// Many replicas setting up at once all succeed, and the streams and
// consumers are there once.
func TestSetupStreamsConcurrently(t *testing.T) {
	srv, err := StartServer(ServerConfig{Port: -1, StoreDir: t.TempDir(), Fsync: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nc, err := Connect(srv.ClientURL(), "setup-test")
			if err != nil {
				errs <- err
				return
			}
			defer nc.Close()
			js, _ := jetstream.New(nc)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			errs <- WaitStreams(ctx, nc, js, StreamConfig{AckWait: 5 * time.Second}, WaitOptions{})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	nc, _ := Connect(srv.ClientURL(), "check")
	defer nc.Close()
	js, _ := jetstream.New(nc)
	names := js.StreamNames(context.Background())
	n := 0
	for range names.Name() {
		n++
	}
	if n != 4 {
		t.Errorf("%d streams, want 4", n)
	}
	c, err := js.Consumer(context.Background(), events.RequestsStream, events.WorkerConsumer)
	if err != nil {
		t.Fatal(err)
	}
	if c.CachedInfo().Config.AckWait != 5*time.Second {
		t.Errorf("worker consumer AckWait %s", c.CachedInfo().Config.AckWait)
	}
}

// The requests stream is persisted asynchronously on one server, the mail
// and seat-event streams are not; a requests stream made before (by an
// older seatd) keeps its persist mode and its messages, as JetStream
// cannot change it; an async one cannot be raised to replicas.
func TestRequestsStreamPersistMode(t *testing.T) {
	nc, js := serverConn(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mode := func(name string) jetstream.PersistModeType {
		t.Helper()
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		return s.CachedInfo().Config.PersistMode
	}

	err := SetupStreams(ctx, js, StreamConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if m := mode(events.RequestsStream); m != jetstream.AsyncPersistMode {
		t.Errorf("requests stream persist mode %s, want async", m)
	}
	for _, name := range []string{events.MailStream, events.SeatEventsStream, events.DeadLetterStream} {
		if m := mode(name); m != jetstream.DefaultPersistMode {
			t.Errorf("%s persist mode %s, want default (the server's fsync policy)", name, m)
		}
	}
	err = WaitStreams(ctx, nc, js, StreamConfig{Replicas: 3}, WaitOptions{})
	if err == nil || !strings.Contains(err.Error(), "nats stream rm "+events.RequestsStream) {
		t.Errorf("raising the async requests stream to 3 replicas: err %v, want one saying to delete it", err)
	}

	// A requests stream made with the default persist mode, holding a
	// request: setting up keeps both.
	if err := js.DeleteStream(ctx, events.RequestsStream); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: events.RequestsStream, Subjects: []string{events.RequestsSubject},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, events.RequestsSubject, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if err := SetupStreams(ctx, js, StreamConfig{}); err != nil {
		t.Fatalf("setting up over an older requests stream: %v", err)
	}
	if m := mode(events.RequestsStream); m != jetstream.DefaultPersistMode {
		t.Errorf("older requests stream persist mode %s, want it kept (default)", m)
	}
	s, _ := js.Stream(ctx, events.RequestsStream)
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Errorf("older requests stream after setup holds %d messages, want its 1 kept", info.State.Msgs)
	}
}

// serverConn starts an embedded server for the test and connects to it.
func serverConn(t *testing.T) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	srv, err := StartServer(ServerConfig{Port: -1, StoreDir: t.TempDir(), Fsync: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := Connect(srv.ClientURL(), t.Name())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}
