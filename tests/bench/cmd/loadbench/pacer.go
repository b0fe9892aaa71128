package main

import (
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// precisePacer sends hit n at (n+1)·interval after the attack began, like
// vegeta's ConstantPacer, but waits with a timerfd instead of letting the
// attacker time.Sleep: on Linux, Go's sleeps wake up to ~1 ms late (the
// runtime's netpoller waits with a millisecond timeout), so a sleeping pacer
// sends late and in bursts, and that lateness would count as server latency.
// A timerfd read parks the goroutine in the netpoller, which epoll wakes when
// the timer fires, within microseconds.
type precisePacer struct {
	interval time.Duration
	fd       int      // the timerfd (File.Fd would switch it to blocking mode)
	timer    *os.File // fd, read through the netpoller
}

func newPrecisePacer(rate int) (*precisePacer, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	return &precisePacer{interval: time.Second / time.Duration(rate), fd: fd, timer: os.NewFile(uintptr(fd), "timerfd")}, nil
}

func (p *precisePacer) Close() error { return p.timer.Close() }

// Pace implements vegeta.Pacer: it waits itself and returns no wait.
func (p *precisePacer) Pace(elapsed time.Duration, hits uint64) (time.Duration, bool) {
	wait := time.Duration(hits+1)*p.interval - elapsed
	if wait <= 20*time.Microsecond {
		return 0, false // on time, or behind: send now
	}
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(int64(wait))}
	if err := unix.TimerfdSettime(p.fd, 0, &spec, nil); err != nil {
		return wait, false // fall back to the attacker's sleep
	}
	var buf [8]byte
	if _, err := p.timer.Read(buf[:]); err != nil {
		return 0, false
	}
	return 0, false
}

// Rate implements vegeta.Pacer.
func (p *precisePacer) Rate(time.Duration) float64 { return float64(time.Second) / float64(p.interval) }
