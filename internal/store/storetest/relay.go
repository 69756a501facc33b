package storetest

import (
	"sync"
	"testing"
)

// RaceRelays starts n goroutines that each call relay again and again, all
// at once, until the returned stop is called; stop waits for them. A relay
// that fails ends its goroutine and the test.
func RaceRelays(t testing.TB, n int, relay func() error) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				if err := relay(); err != nil {
					t.Errorf("relay: %v", err)
					return
				}
			}
		}()
	}
	return func() {
		close(done)
		wg.Wait()
	}
}
