package benchkit

import (
	"encoding/json"
	"fmt"
	"reflect"

	"gomodules.xyz/jsonpatch/v2"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/equality"
)

// SameStatefulSet reports whether two StatefulSet documents are the same
// object as the apiserver stores it on CREATE: equal as typed apps/v1 objects
// once status is dropped (the apiserver resets status on create). diffs lists
// where the JSON differs all the same (e.g. a typed round trip writing an
// empty status), as "op path" strings.
func SameStatefulSet(a, b []byte) (same bool, diffs []string, err error) {
	var ma, mb any
	if err := json.Unmarshal(a, &ma); err != nil {
		return false, nil, err
	}
	if err := json.Unmarshal(b, &mb); err != nil {
		return false, nil, err
	}
	if reflect.DeepEqual(ma, mb) {
		return true, nil, nil
	}
	ops, err := jsonpatch.CreatePatch(a, b)
	if err != nil {
		return false, nil, err
	}
	for _, op := range ops {
		v, _ := json.Marshal(op.Value)
		diffs = append(diffs, fmt.Sprintf("%s %s %.80s", op.Operation, op.Path, v))
	}
	var sa, sb appsv1.StatefulSet
	if err := json.Unmarshal(a, &sa); err != nil {
		return false, diffs, err
	}
	if err := json.Unmarshal(b, &sb); err != nil {
		return false, diffs, err
	}
	sa.Status, sb.Status = appsv1.StatefulSetStatus{}, appsv1.StatefulSetStatus{}
	return equality.Semantic.DeepEqual(&sa, &sb), diffs, nil
}
