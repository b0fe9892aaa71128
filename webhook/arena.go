package webhook

import (
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// arena holds the typed objects of one request, reused by the next: a
// StatefulSet, its containers, volumes and claim templates are ~5 KB per
// object, a third of what a request allocated, and the garbage collector
// running more often shows in the latency tail. A request's objects are
// dead once its response is written: the patch carries copies, never
// pointers into them.
type arena struct {
	sts        [2]appsv1.StatefulSet
	used       int
	containers items[corev1.Container]
	volumes    items[corev1.Volume]
	claims     items[corev1.PersistentVolumeClaim]
	mounts     items[corev1.VolumeMount]
}

var arenaPool = sync.Pool{New: func() any { return new(arena) }}

// arenaMax keeps an arena grown by a rare huge object out of the pool.
const arenaMax = 64

// statefulSet returns a zeroed StatefulSet, from the arena when it has one
// (a nil arena allocates).
func (a *arena) statefulSet() *appsv1.StatefulSet {
	if a == nil || a.used == len(a.sts) {
		return &appsv1.StatefulSet{}
	}
	a.used++
	return &a.sts[a.used-1]
}

// release zeroes what the request used, so the pool pins none of its
// strings, and returns the arena to the pool.
func (a *arena) release() {
	clear(a.sts[:a.used])
	a.used = 0
	keep := a.containers.reset() && a.volumes.reset() && a.claims.reset() && a.mounts.reset()
	if keep {
		arenaPool.Put(a)
	}
}

// items hands out slices of T from one backing array.
type items[T any] struct {
	buf  []T
	used int
}

// take returns n zeroed elements.
func (s *items[T]) take(n int) []T {
	if s.used+n > len(s.buf) {
		// A new backing array: the slices handed out keep the old one.
		s.buf, s.used = make([]T, max(2*len(s.buf), n, 4)), 0
	}
	out := s.buf[s.used : s.used+n : s.used+n]
	s.used += n
	return out
}

// reset zeroes the elements handed out and reports whether the backing
// array is small enough to keep.
func (s *items[T]) reset() bool {
	clear(s.buf[:s.used])
	s.used = 0
	return len(s.buf) <= arenaMax
}

// The slices of a typed StatefulSet; a nil arena allocates them.

func (a *arena) containerSlice(n int) []corev1.Container {
	if a == nil {
		return make([]corev1.Container, n)
	}
	return a.containers.take(n)
}

func (a *arena) volumeSlice(n int) []corev1.Volume {
	if a == nil {
		return make([]corev1.Volume, n)
	}
	return a.volumes.take(n)
}

func (a *arena) claimSlice(n int) []corev1.PersistentVolumeClaim {
	if a == nil {
		return make([]corev1.PersistentVolumeClaim, n)
	}
	return a.claims.take(n)
}

func (a *arena) mountSlice(n int) []corev1.VolumeMount {
	if a == nil {
		return make([]corev1.VolumeMount, n)
	}
	return a.mounts.take(n)
}
