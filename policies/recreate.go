package policies

import "fmt"

// Recreation is the procedure that gives an existing StatefulSet a cache
// volumeClaimTemplate without losing data, written once: RecreateAdvice is
// its prose (in the webhooks' warnings and denials and in `audit`), Script
// the commands `eval --recreate` prints. Kubernetes cannot add a
// volumeClaimTemplate in place, and the StatefulSet controller cannot give a
// running pod a new volume ("pod updates may not change fields"; it stops at
// the first pod it cannot update), so the StatefulSet is deleted with its
// pods and PVCs kept, created again, and its pods restarted one by one,
// lowest ordinal first.
type Recreation struct {
	// Name and Namespace are the StatefulSet's; Namespace may be empty
	// (kubectl's current namespace).
	Name, Namespace string
	// Replicas is its spec.replicas (1 when unset, the API's default).
	Replicas int32
}

// RecreationOf is the procedure for sts, with the given replicas.
func RecreationOf(sts *StatefulSet, replicas int32) Recreation {
	return Recreation{Name: sts.Metadata.Name, Namespace: sts.Metadata.Namespace, Replicas: replicas}
}

// ns is kubectl's namespace flag for the StatefulSet, "" without one.
func (r Recreation) ns() string {
	if r.Namespace == "" {
		return ""
	}
	return " -n " + r.Namespace
}

// RetainCommand sets both PVC retention fields to Retain, so no later step
// can delete a claim.
func (r Recreation) RetainCommand() string {
	return fmt.Sprintf(`kubectl patch statefulset %s%s --type=merge -p '{"spec":{"persistentVolumeClaimRetentionPolicy":{"whenDeleted":"Retain","whenScaled":"Retain"}}}'`, r.Name, r.ns())
}

// OrphanCommand deletes the StatefulSet only: its pods keep running and its
// PVCs stay.
func (r Recreation) OrphanCommand() string {
	return fmt.Sprintf("kubectl delete statefulset %s --cascade=orphan%s", r.Name, r.ns())
}

// DeletePodCommand deletes pod ordinal i, so the controller creates it again
// with the cache claim.
func (r Recreation) DeletePodCommand(i int32) string {
	return fmt.Sprintf("kubectl delete pod %s-%d%s", r.Name, i, r.ns())
}

// RestartPodCommand deletes pod ordinal i and waits until the controller has
// created it again and it is Ready (kubectl wait fails at once on a pod that
// does not exist yet, hence the loop first).
func (r Recreation) RestartPodCommand(i int32) string {
	pod := fmt.Sprintf("%s-%d", r.Name, i)
	return fmt.Sprintf("%s && until kubectl get pod %s%s >/dev/null 2>&1; do sleep 1; done && kubectl wait --for=condition=Ready pod/%s%s --timeout=15m",
		r.DeletePodCommand(i), pod, r.ns(), pod, r.ns())
}

// RecreateAdvice says in one sentence how sts gets a cache template: the
// procedure of Recreation, naming its commands.
func RecreateAdvice(sts *StatefulSet) string {
	r := RecreationOf(sts, 1)
	// The SPEC's own words first, so the advice reads as the command does.
	return "to get it, recreate the StatefulSet: " + r.OrphanCommand() + " (pods and PVCs are kept), apply it again, " +
		"then restart its pods one by one, lowest ordinal first (" + r.DeletePodCommand(0) + ", wait until it is Ready, then the next); " +
		"`dittofs-webhook eval --recreate` prints every step"
}

// Script is the procedure for rs as a shell script, one line each: #
// comments and one command a line, in the order that loses nothing. file is
// where the user saved the manifests that create the StatefulSets again.
func Script(rs []Recreation, file string) []string {
	var lines []string
	p := func(format string, args ...any) { lines = append(lines, fmt.Sprintf(format, args...)) }
	each := func(cmd func(Recreation) string) {
		for _, r := range rs {
			lines = append(lines, cmd(r))
		}
	}
	p("# %d StatefulSet(s) to recreate with a persistent cache. Save this command's output (stdout) as %s, then run, in order:", len(rs), file)
	p("# 1. Keep every PVC whatever happens next: retention Retain/Retain.")
	each(Recreation.RetainCommand)
	p("# 2. Delete the StatefulSet only: its pods keep running and its PVCs stay (--cascade=orphan).")
	each(Recreation.OrphanCommand)
	p("# 3. Create it again, with the cache template; it adopts the running pods.")
	p("kubectl create -f %s", file)
	p("# 4. Restart the pods one at a time, lowest ordinal first, each once the previous one is Ready:")
	p("#    a pod gets its cache claim only when it is created again (each line waits for the controller")
	p("#    to create the pod again, then for it to be Ready).")
	for _, r := range rs {
		for i := range r.Replicas {
			p("%s", r.RestartPodCommand(i))
		}
	}
	return lines
}
