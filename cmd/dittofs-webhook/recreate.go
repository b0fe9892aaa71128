package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/dittofs/dittofs-webhook/policies"
)

// recreateFile is what the steps call the manifests --recreate prints: the
// user saves stdout under that name.
const recreateFile = "recreate.yaml"

// serverSetFields are the members of metadata the apiserver sets, which a
// create must not carry; status goes too.
var serverSetFields = []string{"uid", "resourceVersion", "creationTimestamp", "generation", "managedFields", "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds"}

// recreate prints, for each managed StatefulSet without a cache template, the
// manifest that creates it again with one (server-set fields removed, the
// mutation applied: what the cluster will store), and on stderr the steps
// that get it there without losing a PVC. Kubernetes cannot add a
// volumeClaimTemplate in place, and the StatefulSet controller cannot give a
// running pod a new volume ("pod updates may not change fields"): it stops
// at the first pod it cannot update, so every pod is restarted by hand,
// lowest ordinal first.
func (e *evaluator) recreate(stdout io.Writer, format string) int {
	var out bytes.Buffer
	var todo []*statefulSet
	for _, s := range e.sts {
		if s.view == nil || !policies.IsManaged(s.view) || policies.HasCacheTemplate(s.view) {
			continue
		}
		clean, err := withoutServerFields(s.json)
		if err == nil {
			s.ev, err = e.admitter.Evaluate("CREATE", clean, nil)
		}
		if err != nil || !s.ev.Allowed() {
			// The steps would leave it deleted and not created again.
			s.evalErr = err
			e.denied = true
			fmt.Fprintf(e.stderr, "# statefulset %s: cannot be recreated as it is; fix what follows first:\n", s.name)
			e.report([]*statefulSet{s})
			continue
		}
		if format == "json" {
			err = json.Indent(&out, s.ev.Object, "", "  ")
			out.WriteByte('\n')
		} else {
			if out.Len() > 0 {
				out.WriteString("---\n")
			}
			err = writeYAML(&out, s.ev.Object)
		}
		if err != nil {
			fmt.Fprintf(e.stderr, "eval: %v\n", err)
			return 2
		}
		todo = append(todo, s)
	}
	if _, err := stdout.Write(out.Bytes()); err != nil {
		fmt.Fprintf(e.stderr, "eval: writing the output: %v\n", err)
		return 2
	}
	if len(todo) == 0 {
		if !e.denied {
			fmt.Fprintln(e.stderr, nothingToRecreate(e.sts))
		}
	} else {
		writeSteps(e.stderr, todo)
	}
	if e.denied {
		return 1
	}
	return 0
}

// nothingToRecreate says why there are no steps, naming the StatefulSets
// --recreate does not manage, whose notes say what to do.
func nothingToRecreate(sts []*statefulSet) string {
	unmanaged := 0
	for _, s := range sts {
		if s.view != nil && !policies.IsManaged(s.view) {
			unmanaged++
		}
	}
	if unmanaged == 0 {
		return "# nothing to recreate: every managed StatefulSet has a persistent cache"
	}
	return fmt.Sprintf("# nothing to recreate: no managed StatefulSet lacks a persistent cache; %d StatefulSet(s) of the input are not managed (labelled %s): see above, or run again with --manage", unmanaged, policies.LabelServer)
}

// writeSteps prints the migration as a shell script: # comments, one command
// a line, in the order that loses nothing.
func writeSteps(w io.Writer, todo []*statefulSet) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	p("# %d StatefulSet(s) to recreate with a persistent cache. Save this command's output (stdout) as %s, then run, in order:", len(todo), recreateFile)
	p("# 1. Keep every PVC whatever happens next: retention Retain/Retain.")
	for _, s := range todo {
		p(`kubectl patch statefulset %s%s --type=merge -p '{"spec":{"persistentVolumeClaimRetentionPolicy":{"whenDeleted":"Retain","whenScaled":"Retain"}}}'`, s.view.Metadata.Name, nsFlag(s))
	}
	p("# 2. Delete the StatefulSet only: its pods keep running and its PVCs stay (--cascade=orphan).")
	for _, s := range todo {
		p("kubectl delete statefulset %s --cascade=orphan%s", s.view.Metadata.Name, nsFlag(s))
	}
	p("# 3. Create it again, with the cache template; it adopts the running pods.")
	p("kubectl create -f %s", recreateFile)
	p("# 4. Restart the pods one at a time, lowest ordinal first, each once the previous one is Ready:")
	p("#    a pod gets its cache claim only when it is created again (each line waits for the controller")
	p("#    to create the pod again, then for it to be Ready).")
	for _, s := range todo {
		replicas := int32(1)
		if s.typed.Spec.Replicas != nil {
			replicas = *s.typed.Spec.Replicas
		}
		for i := range replicas {
			pod := fmt.Sprintf("%s-%d", s.view.Metadata.Name, i)
			// kubectl wait fails at once on a pod that does not exist yet:
			// wait for the controller to create it again first.
			p("kubectl delete pod %s%s && until kubectl get pod %s%s >/dev/null 2>&1; do sleep 1; done && kubectl wait --for=condition=Ready pod/%s%s --timeout=15m", pod, nsFlag(s), pod, nsFlag(s), pod, nsFlag(s))
		}
	}
}

func nsFlag(s *statefulSet) string {
	if s.view.Metadata.Namespace == "" {
		return ""
	}
	return " -n " + s.view.Metadata.Namespace
}

// withoutServerFields removes status and the server-set metadata of a stored
// object, keeping every other member as it is.
func withoutServerFields(object []byte) ([]byte, error) {
	var obj map[string]jsontext.Value
	if err := jsonv2.Unmarshal(object, &obj); err != nil {
		return nil, err
	}
	delete(obj, "status")
	if raw, ok := obj["metadata"]; ok {
		var meta map[string]jsontext.Value
		if err := jsonv2.Unmarshal(raw, &meta); err != nil {
			return nil, err
		}
		for _, f := range serverSetFields {
			delete(meta, f)
		}
		b, err := marshalJSON(meta)
		if err != nil {
			return nil, err
		}
		obj["metadata"] = b
	}
	return marshalJSON(obj)
}
